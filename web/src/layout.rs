//! A small force-directed layout for the network map (Fruchterman–Reingold): linked marks
//! pull together, all marks push apart, and the moves cool down. Pure and deterministic, so it
//! is tested on the host; positions from the previous layout seed the next, so the map does
//! not jump when one peer comes or goes.

use std::collections::HashMap;
use std::hash::Hash;

/// The drawing area (the SVG's viewBox) and a margin kept free at its edges.
pub const WIDTH: f64 = 600.0;
pub const HEIGHT: f64 = 360.0;
const MARGIN: f64 = 24.0;
const ROUNDS: usize = 200;

/// Positions for `nodes` linked by `edges` (pairs of indices into `nodes`).
pub fn layout<K: Eq + Hash + Copy>(
    nodes: &[K],
    edges: &[(usize, usize)],
    previous: &HashMap<K, (f64, f64)>,
) -> Vec<(f64, f64)> {
    let n = nodes.len();
    if n == 0 {
        return Vec::new();
    }
    let (cx, cy) = (WIDTH / 2.0, HEIGHT / 2.0);
    let radius = (HEIGHT / 2.0 - MARGIN) * 0.8;
    let mut pos: Vec<(f64, f64)> = nodes
        .iter()
        .enumerate()
        .map(|(i, k)| {
            previous.get(k).copied().unwrap_or_else(|| {
                let a = i as f64 * std::f64::consts::TAU / n as f64;
                (cx + radius * a.cos(), cy + radius * a.sin())
            })
        })
        .collect();
    if n == 1 {
        return vec![(cx, cy)];
    }
    let area = (WIDTH - 2.0 * MARGIN) * (HEIGHT - 2.0 * MARGIN);
    let k = (area / n as f64).sqrt() * 0.5;
    let mut heat = WIDTH / 8.0;
    for _ in 0..ROUNDS {
        let mut moves = vec![(0.0f64, 0.0f64); n];
        for i in 0..n {
            for j in (i + 1)..n {
                let (dx, dy) = (pos[i].0 - pos[j].0, pos[i].1 - pos[j].1);
                // Coincident marks are nudged apart deterministically.
                let d = (dx * dx + dy * dy).sqrt().max(0.01);
                let push = k * k / d;
                let (ux, uy) = if d > 0.01 {
                    (dx / d, dy / d)
                } else {
                    (1.0, 0.0)
                };
                moves[i].0 += ux * push;
                moves[i].1 += uy * push;
                moves[j].0 -= ux * push;
                moves[j].1 -= uy * push;
            }
        }
        for &(a, b) in edges {
            if a >= n || b >= n || a == b {
                continue;
            }
            let (dx, dy) = (pos[a].0 - pos[b].0, pos[a].1 - pos[b].1);
            let d = (dx * dx + dy * dy).sqrt().max(0.01);
            let pull = d * d / k;
            moves[a].0 -= dx / d * pull;
            moves[a].1 -= dy / d * pull;
            moves[b].0 += dx / d * pull;
            moves[b].1 += dy / d * pull;
        }
        for (p, m) in pos.iter_mut().zip(&moves) {
            // A gentle pull to the centre keeps separate groups on screen.
            let (gx, gy) = ((cx - p.0) * 0.05, (cy - p.1) * 0.05);
            let (mx, my) = (m.0 + gx, m.1 + gy);
            let len = (mx * mx + my * my).sqrt().max(0.01);
            let step = len.min(heat);
            p.0 = (p.0 + mx / len * step).clamp(MARGIN, WIDTH - MARGIN);
            p.1 = (p.1 + my / len * step).clamp(MARGIN, HEIGHT - MARGIN);
        }
        heat *= 0.97;
    }
    pos
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dist(a: (f64, f64), b: (f64, f64)) -> f64 {
        ((a.0 - b.0).powi(2) + (a.1 - b.1).powi(2)).sqrt()
    }

    #[test]
    fn fifty_marks_fit_and_keep_apart() {
        let nodes: Vec<u32> = (0..50).collect();
        let edges: Vec<(usize, usize)> = (1..50).map(|i| (i, i / 2)).collect();
        let pos = layout(&nodes, &edges, &HashMap::new());
        assert_eq!(pos.len(), 50);
        for &(x, y) in &pos {
            assert!(
                (MARGIN..=WIDTH - MARGIN).contains(&x) && (MARGIN..=HEIGHT - MARGIN).contains(&y)
            );
        }
        let closest = (0..50)
            .flat_map(|i| ((i + 1)..50).map(move |j| (i, j)))
            .map(|(i, j)| dist(pos[i], pos[j]))
            .fold(f64::MAX, f64::min);
        assert!(closest > 8.0, "two marks overlap: {closest}");
    }

    #[test]
    fn linked_marks_end_closer_than_unlinked_ones() {
        let nodes: Vec<u32> = (0..6).collect();
        // Two triangles joined by one link.
        let edges = [(0, 1), (1, 2), (2, 0), (3, 4), (4, 5), (5, 3), (2, 3)];
        let pos = layout(&nodes, &edges, &HashMap::new());
        assert!(dist(pos[0], pos[1]) < dist(pos[0], pos[4]));
    }

    #[test]
    fn the_same_input_gives_the_same_map_and_old_marks_stay_near() {
        let nodes: Vec<u32> = (0..8).collect();
        let edges: Vec<(usize, usize)> = (1..8).map(|i| (i, i - 1)).collect();
        let a = layout(&nodes, &edges, &HashMap::new());
        assert_eq!(a, layout(&nodes, &edges, &HashMap::new()));
        let previous: HashMap<u32, (f64, f64)> =
            nodes.iter().copied().zip(a.iter().copied()).collect();
        let mut more = nodes.clone();
        more.push(8);
        let mut more_edges = edges.clone();
        more_edges.push((8, 7));
        let b = layout(&more, &more_edges, &previous);
        let moved: f64 = (0..8).map(|i| dist(a[i], b[i])).sum::<f64>() / 8.0;
        assert!(
            moved < 80.0,
            "marks jumped {moved:.0} on average when one joined"
        );
    }
}
