//! `first(value, time)` and `last(value, time)`: TimescaleDB's "bookend" aggregates.
//!
//! `first` returns `value` of the row with the smallest `time`, `last` of the row with the
//! largest. As in TimescaleDB (`src/agg_bookend.c`): rows whose `time` is NULL are ignored;
//! a NULL `value` at the winning time is returned as NULL; with no row (or only NULL times)
//! the result is NULL; among rows with the same `time` the first one seen wins, which for
//! `readings` (one point per series and time) only matters across series. `value` and `time`
//! may be of any type; `time` must be orderable (timestamps, numbers, strings).

use std::cmp::Ordering;
use std::sync::Arc;

use arrow::array::{make_comparator, Array, ArrayRef};
use arrow::compute::SortOptions;
use arrow::datatypes::{DataType, Field, FieldRef};
use datafusion::common::ScalarValue;
use datafusion::error::Result as DfResult;
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::utils::format_state_name;
use datafusion::logical_expr::{Accumulator, AggregateUDFImpl, Signature, Volatility};

/// Which end a bookend aggregate keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Bookend {
    First,
    Last,
}

/// The `first` / `last` aggregate function; see the module docs.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct BookendAggregate {
    end: Bookend,
    signature: Signature,
}

impl BookendAggregate {
    pub fn new(end: Bookend) -> Self {
        BookendAggregate { end, signature: Signature::any(2, Volatility::Immutable) }
    }
}

impl AggregateUDFImpl for BookendAggregate {
    fn name(&self) -> &str {
        match self.end {
            Bookend::First => "first",
            Bookend::Last => "last",
        }
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> DfResult<DataType> {
        Ok(arg_types[0].clone())
    }

    fn is_nullable(&self) -> bool {
        true
    }

    fn accumulator(&self, args: AccumulatorArgs) -> DfResult<Box<dyn Accumulator>> {
        let value_type = args.expr_fields[0].data_type();
        let time_type = args.expr_fields[1].data_type();
        Ok(Box::new(BookendAccumulator {
            end: self.end,
            value: ScalarValue::try_from(value_type)?,
            time: ScalarValue::try_from(time_type)?,
        }))
    }

    fn state_fields(&self, args: StateFieldsArgs) -> DfResult<Vec<FieldRef>> {
        Ok(vec![
            Arc::new(Field::new(
                format_state_name(args.name, "value"),
                args.input_fields[0].data_type().clone(),
                true,
            )),
            Arc::new(Field::new(
                format_state_name(args.name, "time"),
                args.input_fields[1].data_type().clone(),
                true,
            )),
        ])
    }
}

#[derive(Debug)]
struct BookendAccumulator {
    end: Bookend,
    /// The value at `time`; NULL when nothing has been seen (or the value was NULL).
    value: ScalarValue,
    /// The best time so far; NULL when nothing has been seen.
    time: ScalarValue,
}

impl BookendAccumulator {
    fn better(&self, ordering: Ordering) -> bool {
        match self.end {
            Bookend::First => ordering == Ordering::Less,
            Bookend::Last => ordering == Ordering::Greater,
        }
    }

    /// Folds rows (values, times) in: used for inputs and for partial states alike.
    fn fold(&mut self, values: &ArrayRef, times: &ArrayRef) -> DfResult<()> {
        let compare = make_comparator(times.as_ref(), times.as_ref(), SortOptions::default())?;
        let mut best: Option<usize> = None;
        for row in 0..times.len() {
            if times.is_null(row) {
                continue;
            }
            best = match best {
                Some(current) if !self.better(compare(row, current)) => Some(current),
                _ => Some(row),
            };
        }
        let Some(row) = best else { return Ok(()) };
        let time = ScalarValue::try_from_array(times, row)?;
        let replace = self.time.is_null()
            || time.partial_cmp(&self.time).is_some_and(|ordering| self.better(ordering));
        if replace {
            self.value = ScalarValue::try_from_array(values, row)?;
            self.time = time;
        }
        Ok(())
    }
}

impl Accumulator for BookendAccumulator {
    fn update_batch(&mut self, values: &[ArrayRef]) -> DfResult<()> {
        self.fold(&values[0], &values[1])
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> DfResult<()> {
        self.fold(&states[0], &states[1])
    }

    fn state(&mut self) -> DfResult<Vec<ScalarValue>> {
        Ok(vec![self.value.clone(), self.time.clone()])
    }

    fn evaluate(&mut self) -> DfResult<ScalarValue> {
        if self.time.is_null() {
            return ScalarValue::try_from(self.value.data_type());
        }
        Ok(self.value.clone())
    }

    fn size(&self) -> usize {
        std::mem::size_of_val(self)
            - std::mem::size_of_val(&self.value)
            - std::mem::size_of_val(&self.time)
            + self.value.size()
            + self.time.size()
    }
}
