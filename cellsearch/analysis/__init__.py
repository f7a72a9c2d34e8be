"""Analysis: the Greff et al. 2017 gate study (``gates``), search/reproduction reports (``report``),
the final evaluation's verdicts (``evaluation``) and the search's fidelity (``fidelity``).

The notebooks in the repository's ``analysis/`` folder are thin wrappers around these
functions; ``cellsearch analyze gates|report`` runs them from the command line. Needs the
``analysis`` extra (optuna, scikit-learn, scipy; papermill/nbclient/ipykernel for the notebooks).
"""

from __future__ import annotations

from cellsearch.analysis.gates import (
    FEATURES,
    GATE_FEATURES,
    VARIANTS,
    Ranking,
    add_features,
    gate_importance,
    load_gate_study,
    plot_distributions,
    ranking_table,
    welch_tests,
    write_gate_report,
)
from cellsearch.analysis.plots import markdown_table
from cellsearch.analysis.report import (
    best_so_far,
    compare_runs,
    jozefowicz_agreement,
    op_frequencies,
    plot_jozefowicz,
    score_distribution,
    top_cells_table,
    write_search_report,
)
from cellsearch.runner.gate_study import run_gate_study

__all__ = [
    "FEATURES", "GATE_FEATURES", "VARIANTS", "Ranking", "add_features", "best_so_far", "compare_runs",
    "gate_importance", "jozefowicz_agreement", "load_gate_study", "markdown_table", "op_frequencies",
    "plot_distributions", "plot_jozefowicz", "ranking_table", "run_gate_study", "score_distribution", "top_cells_table",
    "welch_tests", "write_gate_report", "write_search_report",
]
