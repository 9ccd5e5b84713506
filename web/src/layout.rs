//! The network map's layout: the broadcast tree, drawn from its root. The root sits at the
//! centre, each peer on the ring of its depth in the tree (rings spaced so each gets area in
//! proportion to its peers), and each subtree in a wedge as wide as its share of the tree's
//! leaves, so the tree's branches never cross and a message
//! is seen to spread outwards ring by ring. The rings are stretched to the drawing's
//! ellipse, so the layout fills the area at any width. Peers the tree does not reach (a part
//! cut off, a record not yet renewed) go on an outer ring. Linear in the peers, and pure and
//! deterministic (children in the order of their index), so it is tested on the host and a
//! map redrawn with the same tree does not move.

use std::collections::VecDeque;

/// The drawing area (the SVG's viewBox) and a margin kept free at its edges.
pub const WIDTH: f64 = 600.0;
pub const HEIGHT: f64 = 360.0;
const MARGIN: f64 = 16.0;

/// Where each peer goes, and its parent in the tree as drawn.
#[derive(Debug, Clone, PartialEq)]
pub struct Layout {
    pub pos: Vec<(f64, f64)>,
    /// The link each peer is drawn hanging from (none for the root and the peers the tree
    /// does not reach). Records are renewed at different times, so the tree links they list
    /// together can close a cycle or two; these are the ones the drawing is a tree of.
    pub parent: Vec<Option<usize>>,
}

/// Positions for `n` peers whose tree links are `tree` (pairs of indices), laid out from
/// `root`, or, if it is not given, from the centre of the largest part of the tree (where
/// the root walks to: the peer whose farthest peer is nearest).
pub fn layout(n: usize, tree: &[(usize, usize)], root: Option<usize>) -> Layout {
    let (cx, cy) = (WIDTH / 2.0, HEIGHT / 2.0);
    if n == 0 {
        return Layout {
            pos: Vec::new(),
            parent: Vec::new(),
        };
    }
    let mut adjacent = vec![Vec::new(); n];
    for &(a, b) in tree {
        if a < n && b < n && a != b {
            adjacent[a].push(b);
            adjacent[b].push(a);
        }
    }
    for list in &mut adjacent {
        list.sort_unstable();
        list.dedup();
    }
    let root = root.filter(|&r| r < n).unwrap_or_else(|| centre(&adjacent));
    // Breadth first from the root: each peer's depth and children.
    let mut depth = vec![usize::MAX; n];
    let mut parent = vec![None; n];
    let mut children = vec![Vec::new(); n];
    let mut order = Vec::with_capacity(n);
    depth[root] = 0;
    let mut queue = VecDeque::from([root]);
    while let Some(v) = queue.pop_front() {
        order.push(v);
        for &w in &adjacent[v] {
            if depth[w] == usize::MAX {
                depth[w] = depth[v] + 1;
                parent[w] = Some(v);
                children[v].push(w);
                queue.push_back(w);
            }
        }
    }
    // Leaves below each peer, counted from the deepest up.
    let mut leaves = vec![1.0f64; n];
    for &v in order.iter().rev() {
        if !children[v].is_empty() {
            leaves[v] = children[v].iter().map(|&c| leaves[c]).sum();
        }
    }
    let unreached: Vec<usize> = (0..n).filter(|&v| depth[v] == usize::MAX).collect();
    // Each ring gets area in proportion to the peers on it: a tree a few hops deep has most
    // of its peers on its outer rings, which need the room.
    let deepest = order.iter().map(|&v| depth[v]).max().unwrap_or(0);
    let mut on_ring = vec![0usize; deepest + 1];
    for &v in &order {
        on_ring[depth[v]] += 1;
    }
    let mut radius = vec![0.0f64; deepest + 1];
    let mut inside = on_ring[0];
    for d in 1..=deepest {
        radius[d] = ((inside as f64 + on_ring[d] as f64 / 2.0) / order.len() as f64).sqrt();
        inside += on_ring[d];
    }
    // Peers the tree does not reach go outside it, on a ring of their own.
    let outer = if unreached.is_empty() { 1.0 } else { 0.85 };
    let (rx, ry) = (WIDTH / 2.0 - MARGIN, HEIGHT / 2.0 - MARGIN);
    let at = |r: f64, angle: f64| (cx + r * rx * angle.cos(), cy + r * ry * angle.sin());
    let last = radius[deepest].max(f64::EPSILON);
    let mut pos = vec![(cx, cy); n];
    // Each peer's wedge: (start angle, width).
    let mut wedge = vec![(0.0f64, std::f64::consts::TAU); n];
    for &v in &order {
        let (start, width) = wedge[v];
        if v != root {
            pos[v] = at(radius[depth[v]] / last * outer, start + width / 2.0);
        }
        let mut from = start;
        for &c in &children[v] {
            let share = width * leaves[c] / leaves[v];
            wedge[c] = (from, share);
            from += share;
        }
    }
    let step = std::f64::consts::TAU / unreached.len().max(1) as f64;
    for (k, &v) in unreached.iter().enumerate() {
        pos[v] = at(1.0, k as f64 * step);
    }
    Layout { pos, parent }
}

/// The centre of the largest part of the tree: the middle of a longest path in it (found
/// by two breadth-first walks), which is the peer whose farthest peer is nearest.
fn centre(adjacent: &[Vec<usize>]) -> usize {
    let n = adjacent.len();
    let walk = |from: usize| {
        let mut parent = vec![usize::MAX; n];
        let mut seen = vec![false; n];
        seen[from] = true;
        let mut queue = VecDeque::from([from]);
        let mut last = from;
        let mut reached = 0;
        while let Some(v) = queue.pop_front() {
            last = v;
            reached += 1;
            for &w in &adjacent[v] {
                if !seen[w] {
                    seen[w] = true;
                    parent[w] = v;
                    queue.push_back(w);
                }
            }
        }
        (last, parent, reached)
    };
    // The largest part: the one reached from the peer with the most of it.
    let mut best = (0, 0);
    let mut done = vec![false; n];
    for v in 0..n {
        if done[v] {
            continue;
        }
        let (_, parent, reached) = walk(v);
        done[v] = true;
        for (w, p) in parent.iter().enumerate() {
            if *p != usize::MAX {
                done[w] = true;
            }
        }
        if reached > best.1 {
            best = (v, reached);
        }
    }
    let (far, _, _) = walk(best.0);
    let (other, parent, _) = walk(far);
    let mut path = vec![other];
    while let Some(&p) = path.last().map(|&v| &parent[v]) {
        if p == usize::MAX {
            break;
        }
        path.push(p);
    }
    path[path.len() / 2]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dist(a: (f64, f64), b: (f64, f64)) -> f64 {
        ((a.0 - b.0).powi(2) + (a.1 - b.1).powi(2)).sqrt()
    }

    /// How far a point is from the centre, as a share of the ellipse's reach that way.
    fn ring(p: (f64, f64)) -> f64 {
        let (rx, ry) = (WIDTH / 2.0 - MARGIN, HEIGHT / 2.0 - MARGIN);
        (((p.0 - WIDTH / 2.0) / rx).powi(2) + ((p.1 - HEIGHT / 2.0) / ry).powi(2)).sqrt()
    }

    /// A tree of `n` peers, each linked to the one at half its index.
    fn binary(n: usize) -> Vec<(usize, usize)> {
        (1..n).map(|i| (i, (i - 1) / 2)).collect()
    }

    #[test]
    fn five_hundred_marks_fill_the_area_and_keep_apart() {
        let pos = layout(500, &binary(500), Some(0)).pos;
        for &(x, y) in &pos {
            assert!((MARGIN..=WIDTH - MARGIN).contains(&x), "{x}");
            assert!((MARGIN..=HEIGHT - MARGIN).contains(&y), "{y}");
        }
        // The outer ring reaches the edges both ways.
        let (xs, ys): (Vec<f64>, Vec<f64>) = pos.iter().copied().unzip();
        let span = |v: &[f64]| {
            v.iter().copied().fold(f64::MIN, f64::max) - v.iter().copied().fold(f64::MAX, f64::min)
        };
        assert!(span(&xs) > 0.9 * (WIDTH - 2.0 * MARGIN), "{}", span(&xs));
        assert!(span(&ys) > 0.9 * (HEIGHT - 2.0 * MARGIN), "{}", span(&ys));
        let closest = (0..500)
            .flat_map(|i| ((i + 1)..500).map(move |j| (i, j)))
            .map(|(i, j)| dist(pos[i], pos[j]))
            .fold(f64::MAX, f64::min);
        assert!(closest > 2.0, "two marks overlap: {closest}");
    }

    #[test]
    fn the_root_is_at_the_centre_and_each_child_a_ring_further_out() {
        let tree = binary(40);
        let drawn = layout(40, &tree, Some(0));
        let pos = &drawn.pos;
        assert!(ring(pos[0]) < 1e-9);
        for &(child, parent) in &tree {
            let (c, p) = (ring(pos[child]), ring(pos[parent]));
            assert!(
                c > p + 0.1,
                "{child} at {c:.2}, its parent {parent} at {p:.2}"
            );
            assert_eq!(drawn.parent[child], Some(parent));
        }
        assert_eq!(drawn.parent[0], None);
    }

    #[test]
    fn without_a_root_the_tree_is_drawn_from_its_centre() {
        // A line of 9: its middle peer (4) goes in the middle of the map.
        let line: Vec<(usize, usize)> = (1..9).map(|i| (i - 1, i)).collect();
        let pos = layout(9, &line, None).pos;
        assert!(ring(pos[4]) < 1e-9);
        assert!((ring(pos[0]) - ring(pos[8])).abs() < 1e-9);
    }

    #[test]
    fn peers_the_tree_misses_go_on_the_outer_ring() {
        // 0-1-2 linked; 3 and 4 in no tree link.
        let pos = layout(5, &[(0, 1), (1, 2)], Some(0)).pos;
        for v in [3, 4] {
            assert!((ring(pos[v]) - 1.0).abs() < 1e-9, "{v} at {}", ring(pos[v]));
        }
        assert!(ring(pos[2]) < 1.0);
    }

    #[test]
    fn the_same_tree_gives_the_same_map() {
        let tree = binary(60);
        assert_eq!(layout(60, &tree, None), layout(60, &tree, None));
        assert_eq!(layout(1, &[], None).pos, vec![(WIDTH / 2.0, HEIGHT / 2.0)]);
        assert!(layout(0, &[], None).pos.is_empty());
    }

    #[test]
    fn links_that_close_a_cycle_are_not_drawn_as_the_tree() {
        // A square of tree links (two records from different moments): three are drawn.
        let square = [(0, 1), (1, 2), (2, 3), (3, 0)];
        let drawn = layout(4, &square, Some(0));
        assert_eq!(drawn.parent, vec![None, Some(0), Some(1), Some(0)]);
    }
}
