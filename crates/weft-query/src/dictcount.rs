//! Counting rows by dictionary columns: `count(*) … GROUP BY service, level`.
//!
//! The low-cardinality core columns (`service`, `level`, `host`, `_shape`)
//! are dictionary arrays, and DataFusion groups dictionary columns through
//! its generic row format: every row's values are copied out, hashed and
//! compared. Counting by them is the most common aggregate over logs, so
//! [`DictCountRule`] swaps the partial aggregate of such a query for
//! [`DictCountExec`], which counts each batch by its dictionary keys (a
//! small array indexed by the key combination) and looks values up only
//! once per distinct combination per batch. Its output is the partial
//! aggregate's own (group values and count states), so the final
//! aggregate above it is unchanged.
//!
//! The rule applies only where the answer cannot differ: a partial,
//! unordered, unfiltered, unlimited aggregate whose groups are 1 to 4 plain columns of
//! `Dictionary(Int32, Utf8)` and whose aggregates are all `count` of a
//! non-null literal (`count(*)`).

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, Int64Array, RecordBatch, StringArray, StringDictionaryBuilder,
};
use arrow::datatypes::{DataType, Int32Type, SchemaRef};
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TransformedResult, TreeNode, TreeNodeRecursion};
use datafusion::error::Result;
use datafusion::execution::TaskContext;
use datafusion::execution::memory_pool::{MemoryConsumer, MemoryReservation};
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr};
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::aggregates::{AggregateExec, AggregateMode};
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::expressions::{Column, Literal};
use datafusion::physical_plan::metrics::{BaselineMetrics, ExecutionPlanMetricsSet, MetricsSet};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, ExecutionPlanProperties, InputOrderMode,
    Partitioning, PlanProperties, SendableRecordBatchStream,
};
use futures::StreamExt;

/// Most group columns the counter takes (their key combination must fit
/// a `u128`).
const MAX_GROUPS: usize = 4;

/// Key combinations up to this many are counted in a dense array; more
/// (large dictionaries) in a hash map.
const DENSE_MAX: u128 = 1 << 13;

/// Replaces qualifying partial aggregates with [`DictCountExec`].
#[derive(Debug, Default)]
pub struct DictCountRule;

impl PhysicalOptimizerRule for DictCountRule {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        _config: &ConfigOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        plan.transform_up(|p| {
            let Some(agg) = p.downcast_ref::<AggregateExec>() else {
                return Ok(Transformed::no(p));
            };
            match DictCountExec::replacing(agg) {
                Some(exec) => Ok(Transformed::yes(Arc::new(exec) as Arc<dyn ExecutionPlan>)),
                None => Ok(Transformed::no(p)),
            }
        })
        .data()
    }

    fn name(&self) -> &str {
        "dict_count"
    }

    fn schema_check(&self) -> bool {
        true
    }
}

/// The partial aggregate `count(*) GROUP BY` dictionary columns, counted
/// by dictionary keys.
#[derive(Debug)]
pub struct DictCountExec {
    input: Arc<dyn ExecutionPlan>,
    /// Input column of each group, in group order.
    groups: Vec<usize>,
    /// How many count aggregates (each gets the same count).
    counts: usize,
    /// The replaced aggregate's output schema.
    schema: SchemaRef,
    properties: Arc<PlanProperties>,
    metrics: ExecutionPlanMetricsSet,
}

impl DictCountExec {
    /// The counter that computes what `agg` does, if it qualifies.
    fn replacing(agg: &AggregateExec) -> Option<Self> {
        // A partial aggregate over sorted input may have let a sort above
        // it go; the counter emits groups in no order, so it takes only
        // unordered ones.
        if *agg.mode() != AggregateMode::Partial
            || *agg.input_order_mode() != InputOrderMode::Linear
            || agg.limit_options().is_some()
            || agg.filter_expr().iter().any(Option::is_some)
        {
            return None;
        }
        let group = agg.group_expr();
        if !group.is_single() || !group.null_expr().is_empty() {
            return None;
        }
        let input_schema = agg.input().schema();
        let mut groups = Vec::new();
        for (expr, _) in group.expr() {
            let column = expr.downcast_ref::<Column>()?;
            let field = input_schema.fields().get(column.index())?;
            if !is_dictionary_utf8(field.data_type()) {
                return None;
            }
            groups.push(column.index());
        }
        if groups.is_empty() || groups.len() > MAX_GROUPS {
            return None;
        }
        for a in agg.aggr_expr() {
            let counts_rows = a.fun().name() == "count"
                && !a.is_distinct()
                && a.order_bys().is_empty()
                && matches!(a.expressions().as_slice(),
                    [e] if e.downcast_ref::<Literal>().is_some_and(|l| !l.value().is_null()));
            if !counts_rows {
                return None;
            }
        }
        let schema = agg.schema();
        // Groups, then one Int64 state per count: anything else is a shape
        // this counter does not produce.
        let n = groups.len();
        if schema.fields().len() != n + agg.aggr_expr().len()
            || schema.fields()[n..]
                .iter()
                .any(|f| f.data_type() != &DataType::Int64)
            || schema.fields()[..n]
                .iter()
                .any(|f| !is_dictionary_utf8(f.data_type()))
        {
            return None;
        }
        Some(Self::new(
            Arc::clone(agg.input()),
            groups,
            agg.aggr_expr().len(),
            schema,
        ))
    }

    fn new(
        input: Arc<dyn ExecutionPlan>,
        groups: Vec<usize>,
        counts: usize,
        schema: SchemaRef,
    ) -> Self {
        let properties = PlanProperties::new(
            EquivalenceProperties::new(Arc::clone(&schema)),
            Partitioning::UnknownPartitioning(input.output_partitioning().partition_count()),
            EmissionType::Final,
            Boundedness::Bounded,
        );
        Self {
            input,
            groups,
            counts,
            schema,
            properties: Arc::new(properties),
            metrics: ExecutionPlanMetricsSet::new(),
        }
    }
}

fn is_dictionary_utf8(t: &DataType) -> bool {
    matches!(t, DataType::Dictionary(k, v) if **k == DataType::Int32 && **v == DataType::Utf8)
}

impl DisplayAs for DictCountExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        let names: Vec<&str> = self.schema.fields()[..self.groups.len()]
            .iter()
            .map(|f| f.name().as_str())
            .collect();
        write!(
            f,
            "DictCountExec: gby=[{}], counts={}",
            names.join(", "),
            self.counts
        )
    }
}

impl ExecutionPlan for DictCountExec {
    fn name(&self) -> &str {
        "DictCountExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn with_new_children(
        self: Arc<Self>,
        mut children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let input = children.swap_remove(0);
        Ok(Arc::new(Self::new(
            input,
            self.groups.clone(),
            self.counts,
            Arc::clone(&self.schema),
        )))
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        let mut input = self.input.execute(partition, Arc::clone(&context))?;
        let baseline = BaselineMetrics::new(&self.metrics, partition);
        let reservation = MemoryConsumer::new(format!("DictCountExec[{partition}]"))
            .register(context.memory_pool());
        let mut counter = Counter::new(self.groups.clone(), reservation);
        let (schema, counts) = (Arc::clone(&self.schema), self.counts);
        let out = futures::stream::once(async move {
            while let Some(batch) = input.next().await {
                let batch = batch?;
                let _timer = baseline.elapsed_compute().timer();
                counter.add(&batch)?;
            }
            let _timer = baseline.elapsed_compute().timer();
            let batch = counter.finish(&schema, counts)?;
            baseline.record_output(batch.num_rows());
            Ok(batch)
        });
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            Arc::clone(&self.schema),
            out,
        )))
    }

    fn metrics(&self) -> Option<MetricsSet> {
        Some(self.metrics.clone_inner())
    }
}

/// The running counts of one partition.
struct Counter {
    groups: Vec<usize>,
    /// Group key (encoded values) → index into `values` / `rows`.
    index: HashMap<Vec<u8>, usize>,
    /// Per group, its value in each group column.
    values: Vec<Vec<Option<String>>>,
    rows: Vec<i64>,
    reservation: MemoryReservation,
    /// Scratch: counts by key combination for one batch.
    dense: Vec<i64>,
}

impl Counter {
    fn new(groups: Vec<usize>, reservation: MemoryReservation) -> Self {
        Self {
            groups,
            index: HashMap::new(),
            values: Vec::new(),
            rows: Vec::new(),
            reservation,
            dense: Vec::new(),
        }
    }

    /// Counts one batch: each row's key combination is a mixed-radix
    /// number over the columns' dictionary sizes (plus one for null).
    fn add(&mut self, batch: &RecordBatch) -> Result<()> {
        let columns: Vec<_> = self
            .groups
            .iter()
            .map(|&c| batch.column(c).as_dictionary::<Int32Type>())
            .collect();
        let radices: Vec<u128> = columns
            .iter()
            .map(|c| c.values().len() as u128 + 1)
            .collect();
        let combos: u128 = radices.iter().product();
        let code = |row: usize| -> u128 {
            columns.iter().zip(&radices).fold(0u128, |acc, (c, r)| {
                let digit = if c.is_null(row) {
                    r - 1
                } else {
                    c.keys().value(row) as u128
                };
                acc * r + digit
            })
        };
        let mut seen: Vec<(u128, i64)> = Vec::new();
        if combos <= DENSE_MAX {
            self.dense.clear();
            self.dense.resize(combos as usize, 0);
            for row in 0..batch.num_rows() {
                self.dense[code(row) as usize] += 1;
            }
            seen.extend(
                self.dense
                    .iter()
                    .enumerate()
                    .filter(|(_, n)| **n > 0)
                    .map(|(c, n)| (c as u128, *n)),
            );
        } else {
            let mut sparse: HashMap<u128, i64> = HashMap::new();
            for row in 0..batch.num_rows() {
                *sparse.entry(code(row)).or_default() += 1;
            }
            seen.extend(sparse);
        }
        let values: Vec<&StringArray> = columns
            .iter()
            .map(|c| c.values().as_string::<i32>())
            .collect();
        for (mut combo, n) in seen {
            // Digits, last column first.
            let mut digits = vec![0usize; columns.len()];
            for (d, r) in digits.iter_mut().zip(&radices).rev() {
                *d = (combo % r) as usize;
                combo /= r;
            }
            let mut key = Vec::new();
            for ((d, r), v) in digits.iter().zip(&radices).zip(&values) {
                if *d as u128 == r - 1 || v.is_null(*d) {
                    key.push(0);
                } else {
                    let s = v.value(*d);
                    key.push(1);
                    key.extend_from_slice(&(s.len() as u32).to_le_bytes());
                    key.extend_from_slice(s.as_bytes());
                }
            }
            if let Some(&g) = self.index.get(&key) {
                self.rows[g] += n;
                continue;
            }
            self.reservation.try_grow(key.len() * 2 + 96)?;
            let group: Vec<Option<String>> = digits
                .iter()
                .zip(&radices)
                .zip(&values)
                .map(|((d, r), v)| {
                    (*d as u128 != r - 1 && !v.is_null(*d)).then(|| v.value(*d).to_owned())
                })
                .collect();
            self.index.insert(key, self.values.len());
            self.values.push(group);
            self.rows.push(n);
        }
        Ok(())
    }

    /// One batch: the groups' values, then the count state per aggregate.
    fn finish(&mut self, schema: &SchemaRef, counts: usize) -> Result<RecordBatch> {
        let mut columns: Vec<ArrayRef> = Vec::new();
        for c in 0..self.groups.len() {
            let mut b = StringDictionaryBuilder::<Int32Type>::new();
            for group in &self.values {
                b.append_option(group[c].as_deref());
            }
            columns.push(Arc::new(b.finish()));
        }
        let rows: ArrayRef = Arc::new(Int64Array::from(std::mem::take(&mut self.rows)));
        columns.extend(std::iter::repeat_n(rows, counts));
        self.reservation.free();
        Ok(RecordBatch::try_new(Arc::clone(schema), columns)?)
    }
}
