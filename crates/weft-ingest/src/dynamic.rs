//! One dynamic (non-core) column being built, with type widening.
//!
//! A column starts as the type of its first value and widens when a later
//! value does not fit: int → float (only while every int is exact in f64),
//! anything else mixed → utf8. Widening rewrites the values seen so far,
//! which is rare and bounded by one batch.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, BooleanBuilder, Float64Builder, Int64Builder, StringBuilder};
use arrow::datatypes::DataType;

/// Largest integer magnitude every f64 holds exactly.
const EXACT_F64: i64 = 1 << 53;

#[derive(Debug)]
enum Data {
    Bool(BooleanBuilder),
    Int(Int64Builder),
    Float(Float64Builder),
    Str(StringBuilder),
}

/// A value for a dynamic column.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Val<'a> {
    Bool(bool),
    Int(i64),
    Float(f64),
    /// Text: a JSON string's decoded text, a number too large for i64/f64 as
    /// written, or an array's raw JSON.
    Str(&'a str),
}

#[derive(Debug)]
pub(crate) struct DynColumn {
    pub(crate) name: Arc<str>,
    data: Data,
    /// Rows appended so far (values and nulls).
    len: usize,
    /// The row the last value was written for, to spot duplicate keys.
    pub(crate) last_row: usize,
}

impl DynColumn {
    pub(crate) fn new(name: Arc<str>, first: &Val<'_>) -> Self {
        let data = match first {
            Val::Bool(_) => Data::Bool(BooleanBuilder::new()),
            Val::Int(_) => Data::Int(Int64Builder::new()),
            Val::Float(_) => Data::Float(Float64Builder::new()),
            Val::Str(_) => Data::Str(StringBuilder::new()),
        };
        Self {
            name,
            data,
            len: 0,
            last_row: usize::MAX,
        }
    }

    /// Sets the value of `row` (rows before it that got no value become null).
    pub(crate) fn push(&mut self, row: usize, v: Val<'_>) {
        debug_assert!(row >= self.len);
        self.pad(row);
        self.widen_for(&v);
        match (&mut self.data, v) {
            (Data::Bool(b), Val::Bool(x)) => b.append_value(x),
            (Data::Int(b), Val::Int(x)) => b.append_value(x),
            (Data::Float(b), Val::Float(x)) => b.append_value(x),
            (Data::Float(b), Val::Int(x)) => b.append_value(x as f64),
            (Data::Str(b), v) => append_text(b, v),
            (_, _) => unreachable!("widen_for makes the value fit"),
        }
        self.len += 1;
        self.last_row = row;
    }

    fn pad(&mut self, rows: usize) {
        let n = rows - self.len;
        if n == 0 {
            return;
        }
        match &mut self.data {
            Data::Bool(b) => b.append_nulls(n),
            Data::Int(b) => b.append_nulls(n),
            Data::Float(b) => b.append_nulls(n),
            Data::Str(b) => b.append_nulls(n),
        }
        self.len = rows;
    }

    fn widen_for(&mut self, v: &Val<'_>) {
        let fits = match (&self.data, v) {
            (Data::Bool(_), Val::Bool(_))
            | (Data::Int(_), Val::Int(_))
            | (Data::Float(_), Val::Float(_))
            | (Data::Str(_), _) => true,
            (Data::Float(_), Val::Int(x)) => x.unsigned_abs() <= EXACT_F64 as u64,
            _ => false,
        };
        if fits {
            return;
        }
        let to_float = match (&self.data, v) {
            (Data::Int(b), Val::Float(_)) => b
                .values_slice()
                .iter()
                .all(|x| x.unsigned_abs() <= EXACT_F64 as u64),
            _ => false,
        };
        let old = self.finish_array();
        self.data = if to_float {
            let ints = old
                .as_any()
                .downcast_ref::<arrow::array::Int64Array>()
                .expect("int column");
            let mut b = Float64Builder::with_capacity(ints.len());
            for x in ints.iter() {
                b.append_option(x.map(|x| x as f64));
            }
            Data::Float(b)
        } else {
            let mut b = StringBuilder::with_capacity(old.len(), old.len() * 8);
            append_as_text(&old, &mut b);
            Data::Str(b)
        };
    }

    fn finish_array(&mut self) -> ArrayRef {
        match &mut self.data {
            Data::Bool(b) => Arc::new(b.finish()),
            Data::Int(b) => Arc::new(b.finish()),
            Data::Float(b) => Arc::new(b.finish()),
            Data::Str(b) => Arc::new(b.finish()),
        }
    }

    /// Pads to `rows` and returns the finished array.
    pub(crate) fn finish(&mut self, rows: usize) -> ArrayRef {
        self.pad(rows);
        self.finish_array()
    }

    pub(crate) fn data_type(&self) -> DataType {
        match self.data {
            Data::Bool(_) => DataType::Boolean,
            Data::Int(_) => DataType::Int64,
            Data::Float(_) => DataType::Float64,
            Data::Str(_) => DataType::Utf8,
        }
    }
}

fn append_text(b: &mut StringBuilder, v: Val<'_>) {
    match v {
        Val::Str(s) => b.append_value(s),
        Val::Bool(x) => b.append_value(if x { "true" } else { "false" }),
        Val::Int(x) => b.append_value(x.to_string()),
        Val::Float(x) => b.append_value(format_float(x)),
    }
}

/// A float as the shortest text that reads back to the same value; `{:?}`
/// writes `1e300` and `1.0` styles, both valid JSON numbers.
pub(crate) fn format_float(x: f64) -> String {
    format!("{x:?}")
}

fn append_as_text(arr: &ArrayRef, b: &mut StringBuilder) {
    use arrow::array::{BooleanArray, Float64Array, Int64Array};
    let any = arr.as_any();
    for i in 0..arr.len() {
        if arr.is_null(i) {
            b.append_null();
        } else if let Some(a) = any.downcast_ref::<BooleanArray>() {
            append_text(b, Val::Bool(a.value(i)));
        } else if let Some(a) = any.downcast_ref::<Int64Array>() {
            append_text(b, Val::Int(a.value(i)));
        } else if let Some(a) = any.downcast_ref::<Float64Array>() {
            append_text(b, Val::Float(a.value(i)));
        }
    }
}

#[cfg(test)]
mod tests {
    use arrow::array::{Float64Array, Int64Array, StringArray};

    use super::*;

    fn col(first: Val<'_>) -> DynColumn {
        DynColumn::new(Arc::from("x"), &first)
    }

    #[test]
    fn pads_missing_rows_with_null() {
        let mut c = col(Val::Int(1));
        c.push(1, Val::Int(1));
        c.push(3, Val::Int(3));
        let a = c.finish(5);
        let a = a.as_any().downcast_ref::<Int64Array>().unwrap();
        assert_eq!(
            a.iter().collect::<Vec<_>>(),
            vec![None, Some(1), None, Some(3), None]
        );
    }

    #[test]
    fn int_widens_to_float_when_exact() {
        let mut c = col(Val::Int(2));
        c.push(0, Val::Int(2));
        c.push(1, Val::Float(0.5));
        c.push(2, Val::Int(7));
        assert_eq!(c.data_type(), DataType::Float64);
        let a = c.finish(3);
        let a = a.as_any().downcast_ref::<Float64Array>().unwrap();
        assert_eq!(a.values().to_vec(), vec![2.0, 0.5, 7.0]);
    }

    #[test]
    fn big_int_with_float_widens_to_text_not_losing_digits() {
        let big = (1i64 << 53) + 1;
        let mut c = col(Val::Int(big));
        c.push(0, Val::Int(big));
        c.push(1, Val::Float(0.5));
        assert_eq!(c.data_type(), DataType::Utf8);
        let a = c.finish(2);
        let a = a.as_any().downcast_ref::<StringArray>().unwrap();
        assert_eq!(a.value(0), big.to_string());
        assert_eq!(a.value(1), "0.5");
    }

    #[test]
    fn mixed_kinds_widen_to_text() {
        let mut c = col(Val::Bool(true));
        c.push(0, Val::Bool(true));
        c.push(2, Val::Str("x"));
        c.push(3, Val::Int(-4));
        let a = c.finish(4);
        let a = a.as_any().downcast_ref::<StringArray>().unwrap();
        assert_eq!(
            a.iter().collect::<Vec<_>>(),
            vec![Some("true"), None, Some("x"), Some("-4")]
        );
    }
}
