"""Output helpers every report shares: matplotlib without a display (``pyplot``) and DataFrames
as GitHub Markdown tables (``markdown_table``)."""

from __future__ import annotations


def markdown_table(df, floatfmt: str = ".4g") -> str:
    """A DataFrame as a GitHub Markdown table (no tabulate needed)."""
    def cell(v) -> str:
        if isinstance(v, float):
            return "–" if v != v else format(v, floatfmt)
        if v is None:
            return "–"
        return str(v).replace("|", "\\|").replace("\n", " ")

    cols = [str(c) for c in df.columns]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for row in df.itertuples(index=False):
        lines.append("| " + " | ".join(cell(v) for v in row) + " |")
    return "\n".join(lines) + "\n"


def pyplot():
    """``matplotlib.pyplot`` on the Agg backend (files only), unless a notebook's inline backend is on."""
    import matplotlib

    if matplotlib.get_backend().lower() not in ("agg", "module://matplotlib_inline.backend_inline"):
        matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt
