"""Path planning over a gymnasium-robotics maze grid, shared by the PointMaze and AntMaze experts.

A maze is a grid of square cells (``maze.maze_map``: ``1`` = wall, anything else = free);
``MazeGrid`` finds the cell of a world position, BFS distance fields to a goal cell
(cached per goal cell) and the shortest 4-connected cell path, preferring to go straight
among equally short paths. It only reads the ``Maze`` object (``maze_map``,
``maze_size_scaling``, ``cell_xy_to_rowcol``, ``cell_rowcol_to_xy``), so it is
agnostic of the agent (ball or ant) and of the cell size (1 m or 4 m).
"""

from __future__ import annotations

from collections import deque
from typing import Any

import numpy as np

__all__ = ["MazeGrid"]

_MOVES = ((-1, 0), (1, 0), (0, -1), (0, 1))


class MazeGrid:
    """Free cells, BFS distances and shortest cell paths of a maze.

    Args:
        maze: a gymnasium-robotics ``Maze`` (``env.unwrapped.maze``).
    """

    def __init__(self, maze: Any):
        self.maze = maze
        self.scale = float(maze.maze_size_scaling)
        # maze_map entries are 1 (wall), 0, or "r"/"g"/"c" (free cells).
        self.free = np.array([[cell != 1 for cell in row] for row in maze.maze_map], dtype=bool)
        free_cells = np.argwhere(self.free)
        self.free_cells = [tuple(int(v) for v in rc) for rc in free_cells]
        self.free_centres = np.stack([maze.cell_rowcol_to_xy(rc) for rc in free_cells])
        self._dist_cache: dict[tuple[int, int], np.ndarray] = {}

    def centre(self, cell: tuple[int, int]) -> np.ndarray:
        """World ``(x, y)`` of a cell's centre."""
        return np.asarray(self.maze.cell_rowcol_to_xy(np.array(cell)), dtype=np.float64)

    def is_free(self, xy: np.ndarray) -> bool:
        """Whether the world point ``xy`` lies in a free cell."""
        r, c = (int(v) for v in self.maze.cell_xy_to_rowcol(xy))
        return 0 <= r < self.free.shape[0] and 0 <= c < self.free.shape[1] and bool(self.free[r, c])

    def cell(self, xy: np.ndarray) -> tuple[int, int]:
        """Free cell containing ``xy`` (nearest free cell if on a wall/outside)."""
        r, c = (int(v) for v in self.maze.cell_xy_to_rowcol(xy))
        if 0 <= r < self.free.shape[0] and 0 <= c < self.free.shape[1] and self.free[r, c]:
            return (r, c)
        # The agent's centre can sit a hair inside a wall cell while in contact.
        i = int(np.argmin(np.linalg.norm(self.free_centres - xy, axis=1)))
        return self.free_cells[i]

    def distances(self, goal_cell: tuple[int, int]) -> np.ndarray:
        """BFS steps from every cell to ``goal_cell`` (``-1`` if unreachable)."""
        if goal_cell not in self._dist_cache:
            dist = np.full(self.free.shape, -1, dtype=np.int64)
            dist[goal_cell] = 0
            queue = deque([goal_cell])
            while queue:
                r, c = queue.popleft()
                for dr, dc in _MOVES:
                    n = (r + dr, c + dc)
                    if (
                        0 <= n[0] < dist.shape[0]
                        and 0 <= n[1] < dist.shape[1]
                        and self.free[n]
                        and dist[n] < 0
                    ):
                        dist[n] = dist[r, c] + 1
                        queue.append(n)
            self._dist_cache[goal_cell] = dist
        return self._dist_cache[goal_cell]

    def path(self, start: tuple[int, int], goal_cell: tuple[int, int]) -> list[tuple[int, int]]:
        """Shortest cell path ``[start, ..., goal_cell]`` (``[start]`` if none).

        Among equally short paths, keeps going straight when possible, which
        yields fewer corners and therefore faster motion.
        """
        dist = self.distances(goal_cell)
        if dist[start] < 0:
            return [start]
        path = [start]
        heading: tuple[int, int] | None = None
        while path[-1] != goal_cell:
            r, c = path[-1]
            moves = list(_MOVES)
            if heading is not None:
                moves.remove(heading)
                moves.insert(0, heading)
            for dr, dc in moves:
                n = (r + dr, c + dc)
                if 0 <= n[0] < dist.shape[0] and 0 <= n[1] < dist.shape[1] and dist[n] == dist[r, c] - 1:
                    path.append(n)
                    heading = (dr, dc)
                    break
        return path

    def segment_is_clear(self, a: np.ndarray, b: np.ndarray, margin: float) -> bool:
        """Whether a disc of radius ``margin`` moved along ``a -> b`` stays in free cells.

        Checked at points every ``margin / 2`` along the segment, each with the four
        offsets ``(+-margin, +-margin)``: conservative near walls, exact on the grid.
        """
        a = np.asarray(a, dtype=np.float64)
        b = np.asarray(b, dtype=np.float64)
        n = max(2, int(np.ceil(np.linalg.norm(b - a) / max(margin / 2.0, 1e-3))) + 1)
        offsets = margin * np.array([[1.0, 1.0], [1.0, -1.0], [-1.0, 1.0], [-1.0, -1.0]])
        for s in np.linspace(0.0, 1.0, n):
            p = a + s * (b - a)
            if not all(self.is_free(p + o) for o in offsets):
                return False
        return True
