//! Lines to `logs` record batches, one per service.
//!
//! Per line: check UTF-8, tokenize with `weft-scan` while recording each leaf
//! (path, kind, byte range) and the record's shape, then, only once the whole
//! line parsed, resolve the core columns and write every other leaf to its
//! dynamic column in the part of the line's service (each service's lines
//! become a batch of their own, so a column is only as long as the lines of
//! the services that have it). A line that fails is a reject and leaves no
//! trace in the batch. Leaves are kept as offsets into the line, so the per-line buffers
//! are reused and the hot path allocates nothing once warm.
//!
//! The shape (`_shape`) is the record's skeleton as JSON with each leaf
//! replaced by a type code (0 string, 1 number, 2 bool, 3 array as JSON
//! text; `null` stays `null`), then tab-separated core entries such as
//! `T0is` (leaf 0 fed `timestamp`, as integer epoch seconds). Logs of one service
//! share a handful of shapes, so the dictionary-encoded column costs about
//! a byte a row; with it [`crate::rebuild`] gives back the original record.

use std::ops::Range;
use std::sync::Arc;

use arrow::array::{
    ArrayRef, BooleanBuilder, StringBuilder, StringDictionaryBuilder, TimestampNanosecondArray,
};
use arrow::datatypes::{Field, Int32Type, Schema};
use arrow::record_batch::RecordBatch;
use hashbrown::HashMap;
use weft_scan::json::{self, JsonNumber, JsonStr, Visitor};

use crate::config::{NormalizerConfig, Role};
use crate::dynamic::{DynColumn, Val};
use crate::keypath::KeyPath;
use crate::level;
use crate::model::{self, Core, LEVELS};
use crate::registry::FieldRegistry;
use crate::reject::{Reason, RejectBatch};
use crate::time::{self, EpochUnit, Parsed};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Str { escaped: bool },
    Num { integer: bool },
    Bool(bool),
    Array,
}

#[derive(Debug, Clone)]
struct Leaf {
    path: Range<usize>,
    kind: Kind,
    /// Byte range of the value in the line: a string's text between its
    /// quotes, a number's digits, an array's brackets and contents.
    value: Range<usize>,
}

/// Collects one line's leaves and shape. Holds offsets only.
#[derive(Debug, Default)]
struct Walk {
    base: usize,
    leaves: Vec<Leaf>,
    /// Whether leaf paths are kept: only a line of a skeleton not met
    /// before needs them (see [`Plan`]).
    paths: bool,
    /// All leaf paths of the line, back to back; leaves index into it
    /// (each leaf's path is empty when `paths` is off).
    arena: String,
    /// The path of the member being read.
    keys: KeyPath,
    /// Depth inside an array (arrays are kept whole, as JSON text).
    array_depth: usize,
    array_start: usize,
    shape: String,
}

impl Walk {
    fn reset(&mut self, line: &str, paths: bool) {
        self.base = line.as_ptr() as usize;
        self.paths = paths;
        self.leaves.clear();
        self.arena.clear();
        self.keys.clear();
        self.array_depth = 0;
        self.shape.clear();
    }

    fn offset(&self, s: &str) -> usize {
        s.as_ptr() as usize - self.base
    }

    fn leaf(&mut self, kind: Kind, value: Range<usize>) {
        let start = self.arena.len();
        if self.paths {
            self.arena.push_str(&self.keys.path);
        }
        self.leaves.push(Leaf {
            path: start..self.arena.len(),
            kind,
            value,
        });
        self.shape.push(match kind {
            Kind::Str { .. } => '0',
            Kind::Num { .. } => '1',
            Kind::Bool(_) => '2',
            Kind::Array => '3',
        });
    }
}

impl<'a> Visitor<'a> for Walk {
    fn begin_object(&mut self, _: usize) {
        if self.array_depth > 0 {
            return;
        }
        self.shape.push('{');
        self.keys.open();
    }

    fn end_object(&mut self, _: usize) {
        if self.array_depth > 0 {
            return;
        }
        self.shape.push('}');
        self.keys.close();
    }

    fn begin_array(&mut self, offset: usize) {
        if self.array_depth == 0 {
            self.array_start = offset;
        }
        self.array_depth += 1;
    }

    fn end_array(&mut self, end: usize) {
        self.array_depth -= 1;
        if self.array_depth == 0 {
            self.leaf(Kind::Array, self.array_start..end);
        }
    }

    fn key(&mut self, key: JsonStr<'a>) {
        if self.array_depth > 0 {
            return;
        }
        if self.paths {
            self.keys.key(key, &mut self.shape);
        } else {
            self.keys.key_unfollowed(key, &mut self.shape);
        }
    }

    fn string(&mut self, v: JsonStr<'a>) {
        if self.array_depth > 0 {
            return;
        }
        let start = self.offset(v.raw());
        self.leaf(
            Kind::Str {
                escaped: v.has_escapes(),
            },
            start..start + v.raw().len(),
        );
    }

    fn number(&mut self, v: JsonNumber<'a>) {
        if self.array_depth > 0 {
            return;
        }
        let start = self.offset(v.raw());
        self.leaf(
            Kind::Num {
                integer: v.is_integer(),
            },
            start..start + v.raw().len(),
        );
    }

    fn boolean(&mut self, b: bool) {
        if self.array_depth > 0 {
            return;
        }
        self.leaf(Kind::Bool(b), 0..0);
    }

    fn null(&mut self) {
        if self.array_depth > 0 {
            return;
        }
        self.shape.push_str("null");
    }
}

/// Where a path's values go in this batch.
#[derive(Debug, Clone, Copy)]
enum Slot {
    /// Not yet checked against reserved names and the field cap.
    Undecided,
    /// Has a column in each part that has seen it.
    Admitted,
    Extra,
}

#[derive(Debug)]
struct PathInfo {
    path: Arc<str>,
    role: Option<(Role, u8)>,
    slot: Slot,
}

/// What every record of one skeleton (its shape without core entries)
/// shares: the skeleton names each leaf's path in order, so the path ids
/// and the leaves that may feed a core column are worked out once for
/// it, and a record of a house style met before hashes one string
/// instead of looking up each of its paths.
#[derive(Debug)]
struct Plan {
    /// The path id of each leaf.
    ids: Box<[u32]>,
    /// (leaf, role, priority) of each leaf whose path feeds a core column,
    /// the first of the record's leaves with that path only.
    roles: Box<[(u32, Role, u8)]>,
}

/// The rows of one service being built: one `logs` batch of its own, with
/// only the columns its lines have. A request mixing services in one batch
/// would carry every service's columns at full length, mostly nulls; on the
/// benchmark corpus (seven house styles) that padding was two thirds of
/// the buffered memory.
#[derive(Default)]
struct Part {
    rows: usize,
    timestamp: Vec<i64>,
    observed: Vec<i64>,
    inferred: BooleanBuilder,
    service: StringDictionaryBuilder<Int32Type>,
    level: StringDictionaryBuilder<Int32Type>,
    message: StringBuilder,
    correlation_id: StringBuilder,
    span_id: StringBuilder,
    host: StringDictionaryBuilder<Int32Type>,
    shape: StringDictionaryBuilder<Int32Type>,
    extra: StringBuilder,
    columns: Vec<DynColumn>,
    /// The column of each path id in this part; `u32::MAX` for none yet.
    column_of: Vec<u32>,
}

impl Part {
    /// The finished batch.
    fn finish(mut self) -> RecordBatch {
        let rows = self.rows;
        let ts = |v: Vec<i64>| -> ArrayRef {
            Arc::new(TimestampNanosecondArray::from(v).with_timezone("UTC"))
        };
        let mut fields = model::core_fields();
        let mut arrays: Vec<ArrayRef> = vec![
            ts(self.timestamp),
            ts(self.observed),
            Arc::new(self.service.finish()),
            Arc::new(self.level.finish()),
            Arc::new(self.message.finish()),
            Arc::new(self.correlation_id.finish()),
            Arc::new(self.span_id.finish()),
            Arc::new(self.host.finish()),
            Arc::new(self.inferred.finish()),
            Arc::new(self.shape.finish()),
            Arc::new(self.extra.finish()),
        ];
        for col in &mut self.columns {
            fields.push(Field::new(col.name.as_ref(), col.data_type(), true));
            arrays.push(col.finish(rows));
        }
        let schema = Arc::new(Schema::new(fields));
        RecordBatch::try_new(schema, arrays).expect("columns built to one length")
    }
}

/// Services with a part of their own per batch; lines of any later service
/// share the last part.
const MAX_PARTS: usize = 64;

/// A core value chosen for the current line.
#[derive(Debug, Clone, Copy)]
enum CoreVal {
    Time(i64, TimeForm),
    Level(u8),
    /// Text from the leaf's value (decoded if escaped).
    Text,
    /// Part of a traceparent leaf: start and end byte within the line.
    Derived(usize, usize),
}

#[derive(Debug, Clone, Copy)]
enum TimeForm {
    Text,
    EpochText(EpochUnit),
    EpochInt(EpochUnit),
    EpochFloat(EpochUnit),
}

#[derive(Debug, Clone)]
struct Choice {
    priority: u8,
    leaf: usize,
    value: CoreVal,
}

/// Per-request defaults for core columns the record does not carry.
#[derive(Debug, Clone, Default)]
pub struct Defaults {
    pub service: Option<String>,
    pub host: Option<String>,
}

/// Counts from building a batch.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub lines: u64,
    pub accepted: u64,
    pub rejected: u64,
    pub bytes: u64,
}

/// Builds one `logs` batch (and its rejects) from lines.
///
/// One builder per thread; the [`FieldRegistry`] is shared so the field cap
/// holds for the whole table.
pub struct BatchBuilder {
    config: Arc<NormalizerConfig>,
    roles: Arc<HashMap<Box<str>, (Role, u8)>>,
    registry: Arc<FieldRegistry>,
    defaults: Defaults,
    observed_at: i64,
    /// Rows in all parts.
    rows: usize,
    /// One part per service, in first-seen order.
    parts: Vec<Part>,
    /// The part of each service; lines without one use `unnamed`.
    part_of: HashMap<Box<str>, usize>,
    unnamed: Option<usize>,
    /// Every leaf path seen, by id.
    paths: Vec<PathInfo>,
    path_ids: HashMap<Box<str>, u32>,
    /// The plans of the skeletons met, and each skeleton's plan.
    plans: Vec<Plan>,
    plan_of: HashMap<Box<str>, u32>,
    walk: Walk,
    choices: [Option<Choice>; 7],
    scratch: String,
    extra_buf: String,
    rejects: RejectBatch,
    counts: Counts,
}

impl std::fmt::Debug for BatchBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BatchBuilder")
            .field("rows", &self.rows)
            .field("parts", &self.parts.len())
            .field("counts", &self.counts)
            .finish_non_exhaustive()
    }
}

/// The alias lists as one map from path to (role, priority).
fn compile_roles(config: &NormalizerConfig) -> Arc<HashMap<Box<str>, (Role, u8)>> {
    let mut map = HashMap::new();
    for (path, role, prio) in config.aliases.roles() {
        map.entry(path.into_boxed_str()).or_insert((role, prio));
    }
    Arc::new(map)
}

impl BatchBuilder {
    pub fn new(config: Arc<NormalizerConfig>, registry: Arc<FieldRegistry>) -> Self {
        let roles = compile_roles(&config);
        Self {
            config,
            roles,
            registry,
            defaults: Defaults::default(),
            observed_at: 0,
            rows: 0,
            parts: Vec::new(),
            part_of: HashMap::new(),
            unnamed: None,
            paths: Vec::new(),
            path_ids: HashMap::new(),
            plans: Vec::new(),
            plan_of: HashMap::new(),
            walk: Walk::default(),
            choices: Default::default(),
            scratch: String::new(),
            extra_buf: String::new(),
            rejects: RejectBatch::default(),
            counts: Counts::default(),
        }
    }

    /// Sets the receive time stamped on the lines that follow (ns since epoch).
    pub fn set_observed_at(&mut self, ns: i64) {
        self.observed_at = ns;
    }

    pub fn set_defaults(&mut self, defaults: Defaults) {
        self.defaults = defaults;
    }

    pub fn rows(&self) -> usize {
        self.rows
    }

    pub fn counts(&self) -> Counts {
        self.counts
    }

    /// Records a line that was refused before parsing (too long, say).
    pub fn reject(&mut self, source: &Arc<str>, line_no: u64, raw: &[u8], reason: Reason) {
        self.counts.lines += 1;
        self.counts.rejected += 1;
        self.counts.bytes += raw.len() as u64;
        self.rejects
            .push(self.observed_at, source, line_no, raw, &reason.to_string());
    }

    /// Normalizes one line into the batch, or records it as a reject.
    /// Returns the reject reason when the line was refused.
    pub fn push_line(&mut self, source: &Arc<str>, line_no: u64, raw: &[u8]) -> Option<Reason> {
        let reason = match self.try_line(raw) {
            Ok(()) => {
                self.counts.lines += 1;
                self.counts.accepted += 1;
                self.counts.bytes += raw.len() as u64 + 1;
                return None;
            }
            Err(reason) => reason,
        };
        self.counts.bytes += 1;
        self.reject(source, line_no, raw, reason.clone());
        Some(reason)
    }

    /// Normalizes `raw` when it is a record; when it is not, leaves no
    /// trace (no reject, no count) and says why, so a caller can fall back
    /// to another reading of the same bytes (a Loki line that is not JSON is
    /// plain text).
    pub fn try_push(&mut self, raw: &[u8]) -> Result<(), Reason> {
        self.try_line(raw)?;
        self.counts.lines += 1;
        self.counts.accepted += 1;
        self.counts.bytes += raw.len() as u64 + 1;
        Ok(())
    }

    fn try_line(&mut self, raw: &[u8]) -> Result<(), Reason> {
        let line = std::str::from_utf8(raw).map_err(|e| Reason::InvalidUtf8 {
            offset: e.valid_up_to(),
        })?;
        let first = line
            .bytes()
            .find(|b| !matches!(b, b' ' | b'\t' | b'\r' | b'\n'));
        match first {
            Some(b'{') => {}
            Some(b'[') => return Err(Reason::NotAnObject("an array")),
            Some(b'"') => return Err(Reason::NotAnObject("a string")),
            Some(b'-' | b'0'..=b'9') => return Err(Reason::NotAnObject("a number")),
            None => return Err(Reason::NotAnObject("blank")),
            Some(_) => return Err(Reason::NotJson),
        }
        self.walk.reset(line, false);
        let options = json::Options {
            max_depth: self.config.max_depth,
        };
        json::parse(line, &mut self.walk, options).map_err(Reason::Json)?;
        let plan = match self.plan_of.get(self.walk.shape.as_str()) {
            Some(&plan) => plan,
            None => {
                // A skeleton not met before: walk again, keeping each leaf's path.
                self.walk.reset(line, true);
                json::parse(line, &mut self.walk, options).map_err(Reason::Json)?;
                self.new_plan()
            }
        };
        self.commit(line, plan as usize);
        Ok(())
    }

    /// Resolves core columns and writes the parsed line as the next row of
    /// its service's part.
    fn commit(&mut self, line: &str, plan: usize) {
        self.choices = Default::default();
        // Pass 1: pick the best candidate for each core column.
        for &(i, role, priority) in &self.plans[plan].roles {
            let i = i as usize;
            offer(
                &mut self.choices,
                role,
                priority,
                i,
                &self.walk.leaves[i],
                line,
            );
        }
        let part = self.part_for(line);
        let row = self.parts[part].rows;
        // Pass 2: consumed leaves are in core columns; every other leaf goes to
        // its own column or to `_extra`.
        let consumed = self.choices.each_ref().map(|choice| match choice {
            Some(c) if !matches!(c.value, CoreVal::Derived(..)) => c.leaf,
            _ => usize::MAX,
        });
        self.extra_buf.clear();
        for i in 0..self.walk.leaves.len() {
            if !consumed.contains(&i) {
                let leaf = self.walk.leaves[i].clone();
                self.write_dynamic(part, row, self.plans[plan].ids[i], &leaf, line);
            }
        }
        self.write_core(part, line);
        let p = &mut self.parts[part];
        if self.extra_buf.is_empty() {
            p.extra.append_null();
        } else {
            self.extra_buf.push('}');
            p.extra.append_value(&self.extra_buf);
        }
        p.rows += 1;
        self.rows += 1;
    }

    /// The part the current line goes to: its service's (the default
    /// service's when the record names none).
    fn part_for(&mut self, line: &str) -> usize {
        let service: Option<&str> = match &self.choices[Core::Service.index()] {
            Some(c) => {
                let leaf = &self.walk.leaves[c.leaf];
                let text = &line[leaf.value.clone()];
                if let Kind::Str { escaped: true } = leaf.kind {
                    self.scratch.clear();
                    JsonStr::from_raw(text).decode_into(&mut self.scratch);
                    Some(self.scratch.as_str())
                } else {
                    Some(text)
                }
            }
            None => self.defaults.service.as_deref(),
        };
        let found = match service {
            Some(name) => self.part_of.get(name).copied(),
            None => self.unnamed,
        };
        if let Some(i) = found {
            return i;
        }
        if self.parts.len() == MAX_PARTS {
            return MAX_PARTS - 1;
        }
        let i = self.parts.len();
        self.parts.push(Part::default());
        match service {
            Some(name) => {
                self.part_of.insert(Box::from(name), i);
            }
            None => self.unnamed = Some(i),
        }
        i
    }

    /// The plan of the walked line's skeleton, made from its leaves'
    /// paths (the walk must have kept them); returns its index.
    fn new_plan(&mut self) -> u32 {
        /// Skeletons remembered per builder before the plans start afresh.
        const MAX_SHAPES: usize = 4096;
        if self.plans.len() >= MAX_SHAPES {
            self.plans.clear();
            self.plan_of.clear();
        }
        let mut ids = Vec::with_capacity(self.walk.leaves.len());
        let mut roles = Vec::new();
        for (i, leaf) in self.walk.leaves.iter().enumerate() {
            let path = &self.walk.arena[leaf.path.clone()];
            let id = match self.path_ids.get(path) {
                Some(&id) => id,
                None => {
                    let id = self.paths.len() as u32;
                    self.paths.push(PathInfo {
                        path: Arc::from(path),
                        role: self.roles.get(path).copied(),
                        slot: Slot::Undecided,
                    });
                    self.path_ids.insert(Box::from(path), id);
                    id
                }
            };
            // Only a path's first leaf in a record can feed a core column.
            if let Some((role, priority)) = self.paths[id as usize].role
                && !ids.contains(&id)
            {
                roles.push((i as u32, role, priority));
            }
            ids.push(id);
        }
        let plan = self.plans.len() as u32;
        self.plans.push(Plan {
            ids: ids.into(),
            roles: roles.into(),
        });
        self.plan_of
            .insert(Box::from(self.walk.shape.as_str()), plan);
        plan
    }

    fn write_dynamic(&mut self, part: usize, row: usize, id: u32, leaf: &Leaf, line: &str) {
        let info = &mut self.paths[id as usize];
        let path = &*info.path;
        if let Slot::Undecided = info.slot {
            info.slot = if model::is_reserved(path) || !self.registry.admit(path) {
                Slot::Extra
            } else {
                Slot::Admitted
            };
        }
        let text = &line[leaf.value.clone()];
        let decoded: &str = match leaf.kind {
            Kind::Str { escaped: true } => {
                self.scratch.clear();
                JsonStr::from_raw(text).decode_into(&mut self.scratch);
                &self.scratch
            }
            _ => text,
        };
        let val = match leaf.kind {
            Kind::Str { .. } | Kind::Array => Val::Str(decoded),
            Kind::Bool(b) => Val::Bool(b),
            Kind::Num { integer } => {
                let n = JsonNumber::from_raw(text, integer);
                match (n.as_i64(), n.as_f64()) {
                    (Some(i), _) => Val::Int(i),
                    (None, Some(f)) if !integer || f.abs() < 9.007_199_254_740_992e15 => {
                        Val::Float(f)
                    }
                    // Too large to hold exactly: keep the digits as written.
                    _ => Val::Str(text),
                }
            }
        };
        let p = &mut self.parts[part];
        let at = p.column_of.get(id as usize).copied().unwrap_or(u32::MAX);
        match info.slot {
            Slot::Admitted if at == u32::MAX => {
                let idx = p.columns.len();
                p.columns.push(DynColumn::new(Arc::clone(&info.path), &val));
                if p.column_of.len() <= id as usize {
                    p.column_of.resize(id as usize + 1, u32::MAX);
                }
                p.column_of[id as usize] = idx as u32;
                p.columns[idx].push(row, val);
            }
            Slot::Admitted if p.columns[at as usize].last_row != row => {
                p.columns[at as usize].push(row, val);
            }
            _ => {
                // Over the field cap, a reserved name, or a duplicate key.
                self.extra_buf
                    .push(if self.extra_buf.is_empty() { '{' } else { ',' });
                self.extra_buf.push('"');
                json::escape_into(path, &mut self.extra_buf);
                self.extra_buf.push_str("\":");
                match leaf.kind {
                    Kind::Str { .. } => {
                        self.extra_buf.push('"');
                        self.extra_buf.push_str(text);
                        self.extra_buf.push('"');
                    }
                    Kind::Bool(b) => self.extra_buf.push_str(if b { "true" } else { "false" }),
                    Kind::Num { .. } | Kind::Array => self.extra_buf.push_str(text),
                }
            }
        }
    }

    fn write_core(&mut self, part: usize, line: &str) {
        let p = &mut self.parts[part];
        let mut shape = std::mem::take(&mut self.walk.shape);
        for core in Core::ALL {
            let Some(choice) = &self.choices[core.index()] else {
                continue;
            };
            if matches!(choice.value, CoreVal::Derived(..)) {
                continue;
            }
            shape.push('\t');
            shape.push(core.code());
            push_decimal(&mut shape, choice.leaf);
            match choice.value {
                CoreVal::Time(_, form) => match form {
                    TimeForm::Text => shape.push('t'),
                    TimeForm::EpochText(u) => {
                        shape.push('x');
                        shape.push(u.code());
                    }
                    TimeForm::EpochInt(u) => {
                        shape.push('i');
                        shape.push(u.code());
                    }
                    TimeForm::EpochFloat(u) => {
                        shape.push('f');
                        shape.push(u.code());
                    }
                },
                CoreVal::Level(l) => {
                    // Keep the level as written unless it is the canonical name.
                    let leaf = &self.walk.leaves[choice.leaf];
                    let raw = &line[leaf.value.clone()];
                    if !(matches!(leaf.kind, Kind::Str { .. }) && raw == LEVELS[l as usize]) {
                        shape.push(':');
                        match leaf.kind {
                            Kind::Str { .. } => {
                                shape.push('"');
                                shape.push_str(raw);
                                shape.push('"');
                            }
                            _ => shape.push_str(raw),
                        }
                    }
                }
                CoreVal::Text | CoreVal::Derived(..) => {}
            }
        }
        p.shape.append_value(&shape);
        self.walk.shape = shape;

        // timestamp, observed_at, inferred
        match self.choices[Core::Timestamp.index()] {
            Some(Choice {
                value: CoreVal::Time(ns, _),
                ..
            }) => {
                p.timestamp.push(ns);
                p.inferred.append_value(false);
            }
            _ => {
                p.timestamp.push(self.observed_at);
                p.inferred.append_value(true);
            }
        }
        p.observed.push(self.observed_at);
        match self.choices[Core::Level.index()] {
            Some(Choice {
                value: CoreVal::Level(l),
                ..
            }) => p.level.append_value(LEVELS[l as usize]),
            _ => p.level.append_null(),
        }

        let text_of = |choice: &Option<Choice>, scratch: &mut String| -> Option<Range<usize>> {
            let c = choice.as_ref()?;
            let leaf = &self.walk.leaves[c.leaf];
            match &c.value {
                CoreVal::Derived(a, b) => Some(*a..*b),
                CoreVal::Text => match leaf.kind {
                    Kind::Str { escaped: true } => {
                        scratch.clear();
                        JsonStr::from_raw(&line[leaf.value.clone()]).decode_into(scratch);
                        Some(usize::MAX..usize::MAX)
                    }
                    _ => Some(leaf.value.clone()),
                },
                _ => None,
            }
        };
        let mut scratch = std::mem::take(&mut self.scratch);
        for core in [
            Core::Service,
            Core::Message,
            Core::CorrelationId,
            Core::SpanId,
            Core::Host,
        ] {
            let range = text_of(&self.choices[core.index()], &mut scratch);
            let value: Option<&str> = match &range {
                Some(r) if r.start == usize::MAX => Some(&scratch),
                Some(r) => Some(&line[r.clone()]),
                None => match core {
                    Core::Service => self.defaults.service.as_deref(),
                    Core::Host => self.defaults.host.as_deref(),
                    _ => None,
                },
            };
            match core {
                Core::Service => p.service.append_option(value),
                Core::Message => p.message.append_option(value),
                Core::CorrelationId => p.correlation_id.append_option(value),
                Core::SpanId => p.span_id.append_option(value),
                Core::Host => p.host.append_option(value),
                _ => unreachable!(),
            }
        }
        self.scratch = scratch;
    }

    /// Finishes the batch: the `logs` rows, one batch per service in the
    /// order services were first seen (none when every line was rejected),
    /// and the rejects. The builder is empty afterwards but keeps its path
    /// decisions.
    pub fn finish(&mut self) -> (Vec<RecordBatch>, Option<RecordBatch>) {
        let rejects = self.rejects.finish();
        self.counts = Counts::default();
        // Parts start afresh (types may differ in the next batch); path
        // decisions about the cap and reserved names stay. A part exists
        // only once a line was written to it.
        let logs = self.parts.drain(..).map(Part::finish).collect();
        self.part_of.clear();
        self.unnamed = None;
        self.rows = 0;
        (logs, rejects)
    }
}

/// Appends `n` in decimal (what `write!` does, without its formatting machinery:
/// this runs for every core value of every line).
fn push_decimal(out: &mut String, n: usize) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    let mut n = n;
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    for &d in &digits[at..] {
        out.push(d as char);
    }
}

/// Considers leaf `i` for the core column(s) `role` feeds.
fn offer(
    choices: &mut [Option<Choice>; 7],
    role: Role,
    priority: u8,
    i: usize,
    leaf: &Leaf,
    line: &str,
) {
    let text = &line[leaf.value.clone()];
    let mut put = |core: Core, value: CoreVal| {
        let slot = &mut choices[core.index()];
        if slot.as_ref().is_none_or(|c| priority < c.priority) {
            *slot = Some(Choice {
                priority,
                leaf: i,
                value,
            });
        }
    };
    match (role, leaf.kind) {
        (Role::Timestamp, Kind::Str { escaped: false }) => match time::parse_text(text) {
            Some(Parsed::Text(ns)) => put(Core::Timestamp, CoreVal::Time(ns, TimeForm::Text)),
            Some(Parsed::EpochText(ns, u)) => {
                put(Core::Timestamp, CoreVal::Time(ns, TimeForm::EpochText(u)))
            }
            None => {}
        },
        (Role::Timestamp, Kind::Num { integer }) => {
            let n = JsonNumber::from_raw(text, integer);
            if let Some(v) = n.as_i64() {
                if let Some((ns, u)) = time::from_epoch_int(v) {
                    put(Core::Timestamp, CoreVal::Time(ns, TimeForm::EpochInt(u)));
                }
            } else if let Some((ns, u)) = time::from_epoch_decimal(text) {
                put(Core::Timestamp, CoreVal::Time(ns, TimeForm::EpochFloat(u)));
            }
        }
        (Role::Level(scheme), Kind::Str { escaped: false }) => {
            let l = level::from_text(text).or_else(|| {
                let v: i64 = text.parse().ok()?;
                level::from_number(v, scheme)
            });
            if let Some(l) = l {
                put(Core::Level, CoreVal::Level(l));
            }
        }
        (Role::Level(scheme), Kind::Num { integer: true }) => {
            if let Some(l) = text
                .parse()
                .ok()
                .and_then(|v| level::from_number(v, scheme))
            {
                put(Core::Level, CoreVal::Level(l));
            }
        }
        (Role::TraceParent, Kind::Str { escaped: false }) => {
            if let Some((trace, span)) = parse_traceparent(text) {
                let at = leaf.value.start;
                if let Some(t) = trace {
                    put(
                        Core::CorrelationId,
                        CoreVal::Derived(at + t.start, at + t.end),
                    );
                }
                if let Some(s) = span {
                    put(Core::SpanId, CoreVal::Derived(at + s.start, at + s.end));
                }
            }
        }
        (
            Role::Service | Role::Message | Role::CorrelationId | Role::SpanId | Role::Host,
            Kind::Str { .. } | Kind::Num { integer: true },
        ) => {
            let core = match role {
                Role::Service => Core::Service,
                Role::Message => Core::Message,
                Role::CorrelationId => Core::CorrelationId,
                Role::SpanId => Core::SpanId,
                _ => Core::Host,
            };
            // An empty id, service or host says nothing; an empty message is a message.
            if text.is_empty() && core != Core::Message {
                return;
            }
            put(core, CoreVal::Text);
        }
        _ => {}
    }
}

/// Byte ranges of a traceparent's trace id and parent id, each absent when all zero.
pub(crate) type TraceParent = (Option<Range<usize>>, Option<Range<usize>>);

/// Splits a W3C traceparent `vv-<32 hex trace id>-<16 hex parent id>-ff` into
/// the byte ranges of its trace id and parent id. An all-zero id is invalid
/// and left out; a malformed header gives `None`.
pub(crate) fn parse_traceparent(s: &str) -> Option<TraceParent> {
    let b = s.as_bytes();
    if b.len() < 55 || b[2] != b'-' || b[35] != b'-' || b[52] != b'-' {
        return None;
    }
    let hex = |r: Range<usize>| b[r].iter().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f'));
    if !hex(0..2) || &b[0..2] == b"ff" || !hex(3..35) || !hex(36..52) || !hex(53..55) {
        return None;
    }
    // Version 00 is exactly 55 bytes; later versions may append fields.
    if &b[0..2] == b"00" && b.len() != 55 {
        return None;
    }
    let nonzero = |r: &Range<usize>| b[r.clone()].iter().any(|&c| c != b'0');
    let trace = Some(3..35).filter(nonzero);
    let span = Some(36..52).filter(nonzero);
    Some((trace, span))
}
