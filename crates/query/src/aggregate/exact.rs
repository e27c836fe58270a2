//! `sum`, `avg`, `min` and `max` over `DOUBLE PRECISION` with order-independent results.
//!
//! DataFusion's own `sum`/`avg` add doubles in whatever order batches and partitions arrive,
//! so the last bits of a result can change from one plan to the next; its grouped `min`/`max`
//! also depend on the order NaNs arrive in. MiniTrue replaces them, for `DOUBLE PRECISION`
//! arguments without `DISTINCT`, by [`ExactAggregate`]:
//!
//! * `sum(x)` is the exact sum of the values rounded once to the nearest double
//!   ([`minitrue_storage::ExactSum`]); `avg(x)` is that sum divided by the count;
//! * `min(x)`/`max(x)` follow IEEE 754 `totalOrder` (`-0 < +0`, NaN above `+∞`).
//!
//! Every other argument type, and `DISTINCT`, goes to DataFusion's function unchanged, as do
//! window frames (`sum(x) OVER (ROWS …)`), which need retraction.
//! These definitions are what makes the aggregate fast path exact: chunk aggregates stored
//! when a file was written merge to the same bits as adding every point.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, BinaryArray};
use arrow::datatypes::{DataType, Field, FieldRef, Float64Type, UInt64Type};
use datafusion::common::ScalarValue;
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::utils::AggregateOrderSensitivity;
use datafusion::logical_expr::{
    Accumulator, AggregateUDF, AggregateUDFImpl, Documentation, GroupsAccumulator, ReversedUDAF,
    SetMonotonicity, Signature, StatisticsArgs,
};
use minitrue_storage::exact::{total_max, total_min};
use minitrue_storage::ExactSum;

/// Which aggregate an [`ExactAggregate`] computes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ExactKind {
    Sum,
    Avg,
    Min,
    Max,
}

/// DataFusion's `sum`/`avg`/`min`/`max` with exact, order-independent semantics for
/// `DOUBLE PRECISION` (see the module documentation); everything else is delegated.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct ExactAggregate {
    inner: Arc<AggregateUDF>,
    kind: ExactKind,
}

impl ExactAggregate {
    pub fn new(inner: Arc<AggregateUDF>, kind: ExactKind) -> Self {
        ExactAggregate { inner, kind }
    }

    pub fn kind(&self) -> ExactKind {
        self.kind
    }

    /// The four replacements, wrapping DataFusion's functions of the same names.
    pub fn all() -> Vec<AggregateUDF> {
        use datafusion::functions_aggregate::{average, min_max, sum};
        [
            (sum::sum_udaf(), ExactKind::Sum),
            (average::avg_udaf(), ExactKind::Avg),
            (min_max::min_udaf(), ExactKind::Min),
            (min_max::max_udaf(), ExactKind::Max),
        ]
        .into_iter()
        .map(|(inner, kind)| AggregateUDF::new_from_impl(ExactAggregate::new(inner, kind)))
        .collect()
    }

    fn handles(&self, input: &[FieldRef], distinct: bool) -> bool {
        !distinct && input.len() == 1 && input[0].data_type() == &DataType::Float64
    }

    fn imp(&self) -> &Arc<dyn AggregateUDFImpl> {
        self.inner.inner()
    }
}

impl AggregateUDFImpl for ExactAggregate {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn aliases(&self) -> &[String] {
        self.inner.aliases()
    }

    fn signature(&self) -> &Signature {
        self.inner.signature()
    }

    fn return_type(&self, arg_types: &[DataType]) -> DfResult<DataType> {
        self.imp().return_type(arg_types)
    }

    fn return_field(&self, arg_fields: &[FieldRef]) -> DfResult<FieldRef> {
        self.imp().return_field(arg_fields)
    }

    fn is_nullable(&self) -> bool {
        self.imp().is_nullable()
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> DfResult<Vec<DataType>> {
        self.imp().coerce_types(arg_types)
    }

    fn accumulator(&self, args: AccumulatorArgs) -> DfResult<Box<dyn Accumulator>> {
        if !self.handles(args.expr_fields, args.is_distinct) {
            return self.imp().accumulator(args);
        }
        Ok(Box::new(ExactAccumulator::new(self.kind)))
    }

    fn state_fields(&self, args: StateFieldsArgs) -> DfResult<Vec<FieldRef>> {
        if !self.handles(args.input_fields, args.is_distinct) {
            return self.imp().state_fields(args);
        }
        let name = |part: &str| format!("{}[{part}]", args.name);
        let fields = match self.kind {
            ExactKind::Sum => vec![Field::new(name("exact_sum"), DataType::Binary, true)],
            ExactKind::Avg => vec![
                Field::new(name("count"), DataType::UInt64, true),
                Field::new(name("exact_sum"), DataType::Binary, true),
            ],
            ExactKind::Min | ExactKind::Max => {
                vec![Field::new(name("value"), DataType::Float64, true)]
            }
        };
        Ok(fields.into_iter().map(Arc::new).collect())
    }

    fn groups_accumulator_supported(&self, args: AccumulatorArgs) -> bool {
        // The exact accumulators run per group through DataFusion's adapter.
        !self.handles(args.expr_fields, args.is_distinct)
            && self.imp().groups_accumulator_supported(args)
    }

    fn create_groups_accumulator(
        &self,
        args: AccumulatorArgs,
    ) -> DfResult<Box<dyn GroupsAccumulator>> {
        self.imp().create_groups_accumulator(args)
    }

    fn create_sliding_accumulator(&self, args: AccumulatorArgs) -> DfResult<Box<dyn Accumulator>> {
        self.imp().create_sliding_accumulator(args)
    }

    fn order_sensitivity(&self) -> AggregateOrderSensitivity {
        self.imp().order_sensitivity()
    }

    fn reverse_expr(&self) -> ReversedUDAF {
        // Order-insensitive: the same function reversed.
        ReversedUDAF::Identical
    }

    fn is_descending(&self) -> Option<bool> {
        self.imp().is_descending()
    }

    fn value_from_stats(&self, args: &StatisticsArgs) -> Option<ScalarValue> {
        // Statistics-based answers (exact row counts, min/max) carry DataFusion's semantics;
        // only count-like ones would be safe, and sum/avg/min/max have none of those.
        let _ = args;
        None
    }

    fn default_value(&self, data_type: &DataType) -> DfResult<ScalarValue> {
        self.imp().default_value(data_type)
    }

    fn documentation(&self) -> Option<&Documentation> {
        self.imp().documentation()
    }

    fn set_monotonicity(&self, data_type: &DataType) -> SetMonotonicity {
        self.imp().set_monotonicity(data_type)
    }
}

/// One group's state for an exact aggregate over `DOUBLE PRECISION`.
#[derive(Debug)]
struct ExactAccumulator {
    kind: ExactKind,
    count: u64,
    sum: ExactSum,
    extreme: Option<f64>,
}

impl ExactAccumulator {
    fn new(kind: ExactKind) -> Self {
        ExactAccumulator { kind, count: 0, sum: ExactSum::new(), extreme: None }
    }

    fn add_extreme(&mut self, value: f64) {
        self.extreme = Some(match (self.extreme, self.kind) {
            (None, _) => value,
            (Some(current), ExactKind::Min) => total_min(current, value),
            (Some(current), _) => total_max(current, value),
        });
    }

    fn sum_state(&self) -> ScalarValue {
        ScalarValue::Binary((self.count > 0).then(|| self.sum.to_bytes()))
    }

    fn merge_sums(&mut self, counts: Option<&[u64]>, sums: &BinaryArray) -> DfResult<()> {
        for row in 0..sums.len() {
            if sums.is_null(row) {
                continue;
            }
            let sum = ExactSum::from_bytes(sums.value(row))
                .map_err(|e| DataFusionError::External(Box::new(e)))?;
            self.sum.merge(&sum);
            self.count += counts.map_or(1, |counts| counts[row]);
        }
        Ok(())
    }
}

impl Accumulator for ExactAccumulator {
    fn update_batch(&mut self, values: &[ArrayRef]) -> DfResult<()> {
        let Some(values) = values.first() else {
            return Ok(());
        };
        let values = values.as_primitive::<Float64Type>();
        let add = |this: &mut Self, value: f64| match this.kind {
            ExactKind::Sum | ExactKind::Avg => {
                this.sum.add(value);
                this.count += 1;
            }
            ExactKind::Min | ExactKind::Max => this.add_extreme(value),
        };
        if values.null_count() == 0 {
            for &value in values.values() {
                add(self, value);
            }
        } else {
            for value in values.iter().flatten() {
                add(self, value);
            }
        }
        Ok(())
    }

    fn evaluate(&mut self) -> DfResult<ScalarValue> {
        Ok(ScalarValue::Float64(match self.kind {
            ExactKind::Sum => (self.count > 0).then(|| self.sum.to_f64()),
            ExactKind::Avg => (self.count > 0).then(|| self.sum.to_f64() / self.count as f64),
            ExactKind::Min | ExactKind::Max => self.extreme,
        }))
    }

    fn size(&self) -> usize {
        std::mem::size_of::<Self>() + 64
    }

    fn state(&mut self) -> DfResult<Vec<ScalarValue>> {
        Ok(match self.kind {
            ExactKind::Sum => vec![self.sum_state()],
            ExactKind::Avg => vec![ScalarValue::UInt64(Some(self.count)), self.sum_state()],
            ExactKind::Min | ExactKind::Max => vec![ScalarValue::Float64(self.extreme)],
        })
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> DfResult<()> {
        let bad_state = || DataFusionError::Internal("exact aggregate: bad state".to_string());
        match self.kind {
            ExactKind::Sum => {
                let sums = states.first().ok_or_else(bad_state)?.as_binary::<i32>();
                self.merge_sums(None, sums)
            }
            ExactKind::Avg => {
                let [counts, sums] = states else {
                    return Err(bad_state());
                };
                let counts = counts.as_primitive::<UInt64Type>();
                if counts.null_count() > 0 {
                    return Err(bad_state());
                }
                self.merge_sums(Some(counts.values()), sums.as_binary::<i32>())
            }
            ExactKind::Min | ExactKind::Max => {
                let extremes = states.first().ok_or_else(bad_state)?.as_primitive::<Float64Type>();
                for value in extremes.iter().flatten() {
                    self.add_extreme(value);
                }
                Ok(())
            }
        }
    }
}
