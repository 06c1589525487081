//! The write buffer: rows the daemon has acknowledged (they are in the WAL)
//! but not yet written into segments.
//!
//! The WAL's commit thread adds one [`Buffered`] per committed batch, in
//! WAL order; a flush turns a prefix of them into segments and removes them
//! in the same step that publishes the segments (see
//! [`DataDir::flush_some`](crate::DataDir::flush_some)), so a query's
//! [`Snapshot`] sees every row exactly once. Batches keep
//! the schema the normalizer gave them; [`conform`] brings them to a table
//! schema when they are read, and a flush gathers their rows under their
//! [`merged_schema`] (see [`Rows`](crate::segment::Rows)).

use std::sync::Arc;
use std::time::Instant;

use arrow::array::{ArrayRef, RecordBatch, new_null_array};
use arrow::compute::cast;
use arrow::datatypes::{Field, Schema, SchemaRef};

use crate::Result;
use crate::manifest::{ColumnType, Manifest, Table};

/// One acknowledged batch, as the normalizer produced it.
#[derive(Debug)]
pub struct Buffered {
    /// The WAL record holding its input.
    pub lsn: u64,
    /// The records, one batch per service.
    pub logs: Vec<RecordBatch>,
    pub rejects: Option<RecordBatch>,
    /// Bytes of (decompressed) input the batch came from.
    pub input_bytes: u64,
    /// Arrow memory it holds.
    pub mem_bytes: usize,
    pub added: Instant,
}

impl Buffered {
    pub fn new(
        lsn: u64,
        mut logs: Vec<RecordBatch>,
        rejects: Option<RecordBatch>,
        input_bytes: u64,
    ) -> Self {
        logs.retain(|b| b.num_rows() > 0);
        let rejects = rejects.filter(|b| b.num_rows() > 0);
        let mem_bytes = arrow_memory(&logs, &rejects);
        Self {
            lsn,
            logs,
            rejects,
            input_bytes,
            mem_bytes,
            added: Instant::now(),
        }
    }

    /// Rows of both tables.
    pub fn rows(&self) -> usize {
        self.logs
            .iter()
            .chain(&self.rejects)
            .map(|b| b.num_rows())
            .sum()
    }

    pub fn batches(&self, table: Table) -> &[RecordBatch] {
        match table {
            Table::Logs => &self.logs,
            Table::Rejects => self.rejects.as_slice(),
        }
    }
}

/// Arrow memory of a request's batches.
pub fn arrow_memory(logs: &[RecordBatch], rejects: &Option<RecordBatch>) -> usize {
    logs.iter()
        .chain(rejects)
        .map(|b| b.get_array_memory_size())
        .sum()
}

/// A consistent view for one query: the published segments and the
/// buffered batches not in them.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub manifest: Manifest,
    pub buffered: Vec<Arc<Buffered>>,
}

impl Snapshot {
    /// The buffered batches of `table`.
    pub fn batches(&self, table: Table) -> impl Iterator<Item = &RecordBatch> {
        self.buffered.iter().flat_map(move |b| b.batches(table))
    }

    /// The table's columns over segments and buffer, widened where they
    /// disagree, in first-seen order (segments first).
    pub fn table_columns(&self, table: Table) -> Result<Vec<(String, ColumnType)>> {
        let mut columns = self.manifest.table_columns(table);
        for batch in self.batches(table) {
            merge_columns(&mut columns, &Manifest::columns_of(batch.schema_ref())?);
        }
        Ok(columns)
    }
}

/// Adds `more` to `into`, widening the types of columns both have.
pub fn merge_columns(into: &mut Vec<(String, ColumnType)>, more: &[(String, ColumnType)]) {
    for (name, ty) in more {
        match into.iter_mut().find(|(n, _)| n == name) {
            Some(cur) => cur.1 = cur.1.widen(*ty),
            None => into.push((name.clone(), *ty)),
        }
    }
}

/// `batch` with exactly `schema`'s columns: missing ones null, others cast
/// to the (wider) type the schema has.
pub fn conform(batch: &RecordBatch, schema: &SchemaRef) -> Result<RecordBatch> {
    if batch.schema_ref() == schema {
        return Ok(batch.clone());
    }
    let columns = schema
        .fields()
        .iter()
        .map(|f| {
            Ok(column_as(batch, f)?
                .unwrap_or_else(|| new_null_array(f.data_type(), batch.num_rows())))
        })
        .collect::<Result<Vec<ArrayRef>>>()?;
    Ok(RecordBatch::try_new(Arc::clone(schema), columns)?)
}

/// `batch`'s column `field`, cast to the field's (wider) type; `None` when
/// the batch lacks it.
pub fn column_as(batch: &RecordBatch, field: &Field) -> Result<Option<ArrayRef>> {
    Ok(match batch.column_by_name(field.name()) {
        Some(c) if c.data_type() == field.data_type() => Some(Arc::clone(c)),
        Some(c) => Some(cast(c, field.data_type())?),
        None => None,
    })
}

/// The schema for a column list; `core` fields keep their declared type and
/// nullability.
pub fn schema_of(columns: &[(String, ColumnType)], core: &[Field]) -> SchemaRef {
    let fields = columns
        .iter()
        .map(|(name, ty)| match core.iter().find(|f| f.name() == name) {
            Some(f) => f.clone(),
            None => Field::new(name, ty.to_arrow(), true),
        })
        .collect::<Vec<_>>();
    Arc::new(Schema::new(fields))
}

/// The core fields of `table`.
pub fn core_fields(table: Table) -> Vec<Field> {
    match table {
        Table::Logs => weft_ingest::model::core_fields(),
        Table::Rejects => weft_ingest::reject::schema()
            .fields()
            .iter()
            .map(|f| f.as_ref().clone())
            .collect(),
    }
}

/// The schema `batches` of `table` share once merged: every column any of
/// them has, widened where they disagree. `None` for no batches.
pub fn merged_schema(table: Table, batches: &[&RecordBatch]) -> Result<Option<SchemaRef>> {
    if batches.is_empty() {
        return Ok(None);
    }
    let mut columns = Vec::new();
    for b in batches {
        merge_columns(&mut columns, &Manifest::columns_of(b.schema_ref())?);
    }
    Ok(Some(schema_of(&columns, &core_fields(table))))
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Float64Array, Int64Array, StringArray};
    use arrow::datatypes::DataType;

    fn batch(cols: Vec<(&str, ArrayRef)>) -> RecordBatch {
        RecordBatch::try_from_iter(cols).unwrap()
    }

    #[test]
    fn merged_schema_widens_and_keeps_every_column() {
        let a = batch(vec![
            ("n", Arc::new(Int64Array::from(vec![1, 2])) as ArrayRef),
            ("s", Arc::new(StringArray::from(vec!["x", "y"])) as ArrayRef),
        ]);
        let b = batch(vec![(
            "n",
            Arc::new(Float64Array::from(vec![2.5])) as ArrayRef,
        )]);
        let schema = merged_schema(Table::Logs, &[&a, &b]).unwrap().unwrap();
        assert_eq!(schema.field(0).name(), "n");
        assert_eq!(schema.field(0).data_type(), &DataType::Float64);
        assert_eq!(schema.field(1).name(), "s");
        assert_eq!(schema.field(1).data_type(), &DataType::Utf8);
        assert!(merged_schema(Table::Logs, &[]).unwrap().is_none());
    }

    #[test]
    fn merge_columns_keeps_first_seen_order() {
        use ColumnType::*;
        let mut cols = vec![("a".to_owned(), Int64)];
        merge_columns(&mut cols, &[("b".into(), Bool), ("a".into(), Utf8)]);
        assert_eq!(cols, vec![("a".into(), Utf8), ("b".into(), Bool)]);
    }
}
