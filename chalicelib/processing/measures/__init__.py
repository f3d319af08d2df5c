"""The measure registry: every aggregate ``metrics.yaml`` can use, one class each.

============== ============================== ======================= ==================
measure        states (``<f>__<suffix>``)     result                  QuickSight
============== ============================== ======================= ==================
count          (event_count)                  int64                   INTEGER, SUM
sum(f)         sum, n                         float64, null if n = 0  DECIMAL, SUM
min(f)         min                            float64                 DECIMAL, MIN
max(f)         max                            float64                 DECIMAL, MAX
avg(f)         sum, n                         float64, sum / n        DECIMAL, AVERAGE
distinct(f)    hll, exact                     int64 (exact <= 4,096   INTEGER, MAX
                                              values and in final
                                              rows, else HLL)
percentile(f,p) ddsketch                      float64, within 1 %     DECIMAL, MAX
============== ============================== ======================= ==================

The aggregation (:mod:`..aggregation`), the partials' schema, merge and
finalize (:mod:`..partials`), the Athena views (eventpipe/query/views.py)
and the QuickSight data sets (eventpipe/query/quicksight.py) iterate over
this registry; adding a measure is one :class:`~.base.Measure` subclass (with
its :class:`~.base.State` kinds when it needs new ones) listed in :mod:`.registry`.

Layer: part of ``processing/`` (pure domain).
"""

from .base import GroupedValues, Measure, MeasureSpec, ScalarState, SketchState, State
from .basic import Avg, Count, CountState, Max, MaxState, Min, MinState, Sum, SumState
from .distinct import Distinct, ExactCountState, HashSetSql, HllState, exact_counts, exact_sets
from .percentile import DDSketchState, Percentile
from .registry import MEASURES, STATES, measure_kind, metric_states, spec_states, state_kind

__all__ = ["MEASURES", "STATES", "Avg", "Count", "CountState", "DDSketchState", "Distinct", "ExactCountState", "GroupedValues",
           "HashSetSql",
           "HllState", "Max", "MaxState", "Measure", "MeasureSpec", "Min", "MinState", "Percentile", "ScalarState",
           "SketchState", "State", "Sum", "SumState", "exact_counts", "exact_sets", "measure_kind", "metric_states", "spec_states", "state_kind"]
