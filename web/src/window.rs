//! Which rows of a long list to render: only those near the viewport, with the rest stood in
//! for by two spacers, so the page's DOM stays the same size with 20 messages or 20,000.
//! Pure (row heights in, a range out), so it is tested on the host.
//!
//! Rows differ in height (a long message wraps). Each row's height is measured once it has
//! been rendered and kept by id; rows never rendered count as the mean of those measured.
//! Positions are prefix sums of those heights, so a spacer is exactly as tall as the rows it
//! stands for once they have been seen, and scrolling back over them never jumps.

/// A row's height before any has been measured, in CSS pixels.
pub const ESTIMATE: f64 = 64.0;

/// The rows' offsets from the top of the list: `pos[i]` is where row `i` starts, and the
/// last entry is the list's full height.
#[derive(Debug, Clone, PartialEq)]
pub struct Rows {
    pos: Vec<f64>,
}

impl Rows {
    /// Rows of the given heights (`None`: not measured yet).
    pub fn new(heights: impl IntoIterator<Item = Option<f64>>) -> Rows {
        let heights: Vec<Option<f64>> = heights.into_iter().collect();
        let measured: Vec<f64> = heights.iter().flatten().copied().collect();
        let estimate = if measured.is_empty() {
            ESTIMATE
        } else {
            measured.iter().sum::<f64>() / measured.len() as f64
        };
        let mut pos = Vec::with_capacity(heights.len() + 1);
        let mut at = 0.0;
        pos.push(at);
        for h in heights {
            at += h.unwrap_or(estimate);
            pos.push(at);
        }
        Rows { pos }
    }

    pub fn len(&self) -> usize {
        self.pos.len() - 1
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Where row `i` starts (the list's height for `i == len`).
    pub fn top(&self, i: usize) -> f64 {
        self.pos[i.min(self.len())]
    }

    pub fn height(&self) -> f64 {
        self.top(self.len())
    }

    /// The rows that overlap `from..to` (offsets into the list) widened by `margin` on both
    /// sides, as `start..end`. Empty, at the nearest end, when the band misses the list.
    pub fn visible(&self, from: f64, to: f64, margin: f64) -> (usize, usize) {
        let n = self.len();
        let (from, to) = (from - margin, to + margin);
        // The first row that ends below `from`, and the first that starts at or past `to`.
        let start = self.pos[1..].partition_point(|&end| end <= from);
        let end = self.pos[..n].partition_point(|&top| top < to);
        (start.min(n), end.max(start).min(n))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unmeasured_rows_count_as_the_mean_of_measured_ones() {
        let rows = Rows::new([Some(10.0), None, Some(30.0)]);
        assert_eq!(rows.height(), 60.0);
        assert_eq!(rows.top(2), 30.0);
        let none = Rows::new([None, None]);
        assert_eq!(none.height(), 2.0 * ESTIMATE);
    }

    #[test]
    fn only_rows_near_the_viewport_are_rendered() {
        // 1,000 rows of 50 px; a viewport of 500 px scrolled 10,000 px into the list.
        let rows = Rows::new(std::iter::repeat_n(Some(50.0), 1_000));
        assert_eq!(rows.visible(10_000.0, 10_500.0, 0.0), (200, 210));
        assert_eq!(rows.visible(10_000.0, 10_500.0, 500.0), (190, 220));
        // A row cut by the viewport's edge is in.
        assert_eq!(rows.visible(10_025.0, 10_525.0, 0.0), (200, 211));
    }

    #[test]
    fn a_band_off_either_end_renders_nothing_there() {
        let rows = Rows::new(std::iter::repeat_n(Some(50.0), 10));
        // The list is still below the viewport (the reader is at the map).
        assert_eq!(rows.visible(-2_000.0, -1_000.0, 0.0), (0, 0));
        // The list begins inside the viewport.
        assert_eq!(rows.visible(-300.0, 200.0, 0.0), (0, 4));
        // Scrolled past its end.
        assert_eq!(rows.visible(5_000.0, 6_000.0, 0.0), (10, 10));
        assert_eq!(Rows::new([]).visible(0.0, 100.0, 100.0), (0, 0));
    }
}
