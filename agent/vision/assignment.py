"""Minimum-cost assignment of rows to columns (the linear sum assignment problem), in NumPy.

The tracker matches a few dozen tracks to a few dozen detections per frame. SciPy's solver does
this well, but importing ``scipy.optimize`` costs the agent about 40 MB of memory; this is the same
shortest-augmenting-path method (Jonker-Volgenant, in the form of Crouse 2016: one Dijkstra
search per row over reduced costs, with dual variables), vectorised over columns.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.intp]


def linear_sum_assignment(cost: npt.ArrayLike) -> tuple[IntArray, IntArray]:
    """Rows and columns of a minimum-cost assignment of an (N, M) matrix of finite costs.

    Every row (when N <= M) or every column (when N > M) is assigned once; the result has
    min(N, M) pairs, sorted by row, like ``scipy.optimize.linear_sum_assignment``.
    """
    matrix = np.asarray(cost, dtype=np.float64)
    if matrix.ndim != 2:
        raise ValueError(f"cost must be a 2-D matrix, got shape {matrix.shape}")
    if not np.isfinite(matrix).all():
        raise ValueError("cost must hold finite numbers only")
    if matrix.shape[0] == 0 or matrix.shape[1] == 0:
        empty = np.zeros(0, dtype=np.intp)
        return empty, empty.copy()
    transposed = matrix.shape[0] > matrix.shape[1]
    cols = _assign_rows(matrix.T if transposed else matrix)
    rows = np.arange(cols.size, dtype=np.intp)
    if transposed:
        order = np.argsort(cols, kind="stable")
        return cols[order], rows[order]
    return rows, cols


def _assign_rows(cost: FloatArray) -> IntArray:
    """The column of each row for a matrix with no more rows than columns."""
    n_rows, n_cols = cost.shape
    u = np.zeros(n_rows)  # row duals
    v = np.zeros(n_cols)  # column duals
    row_of_col = np.full(n_cols, -1, dtype=np.intp)
    col_of_row = np.full(n_rows, -1, dtype=np.intp)
    for start in range(n_rows):
        shortest = np.full(n_cols, np.inf)
        path = np.full(n_cols, -1, dtype=np.intp)
        scanned_rows = np.zeros(n_rows, dtype=bool)
        scanned_cols = np.zeros(n_cols, dtype=bool)
        row, reach, sink = start, 0.0, -1
        while sink < 0:
            scanned_rows[row] = True
            reduced = reach + cost[row] - u[row] - v
            better = ~scanned_cols & (reduced < shortest)
            shortest[better] = reduced[better]
            path[better] = row
            open_cols = np.flatnonzero(~scanned_cols)
            lowest = shortest[open_cols].min()
            ties = open_cols[shortest[open_cols] == lowest]
            free = ties[row_of_col[ties] < 0]
            col = int(free[0] if free.size else ties[0])  # an unassigned column ends the search at once
            reach = float(lowest)
            scanned_cols[col] = True
            if row_of_col[col] < 0:
                sink = col
            else:
                row = int(row_of_col[col])
        u[start] += reach
        others = scanned_rows.copy()
        others[start] = False
        u[others] += reach - shortest[col_of_row[others]]
        v[scanned_cols] -= reach - shortest[scanned_cols]
        col = sink
        while True:  # flip the augmenting path
            row = int(path[col])
            row_of_col[col] = row
            col_of_row[row], col = col, int(col_of_row[row])
            if row == start:
                break
    return col_of_row
