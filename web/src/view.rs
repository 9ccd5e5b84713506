//! The part of the map in view: the SVG's viewBox, zoomed and panned by wheel, drag, pinch
//! and keys. Pure, so it is tested on the host; the map sets it on its element directly, so
//! a pan redraws nothing but the view.

use crate::layout::{HEIGHT, WIDTH};

/// Closest zoom: a tenth of the map's width in view (a mark of a 1,000-node map is then
/// about 30 pixels across on a desktop).
const MIN_WIDTH: f64 = WIDTH / 10.0;

/// A rectangle of map coordinates, in view.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct View {
    pub x: f64,
    pub y: f64,
    pub w: f64,
    pub h: f64,
}

impl Default for View {
    /// The whole map.
    fn default() -> Self {
        View {
            x: 0.0,
            y: 0.0,
            w: WIDTH,
            h: HEIGHT,
        }
    }
}

impl View {
    /// As the `viewBox` attribute says it.
    pub fn attr(&self) -> String {
        format!("{:.2} {:.2} {:.2} {:.2}", self.x, self.y, self.w, self.h)
    }

    /// The map point under a pointer at `(fx, fy)`, each a fraction of the element's size.
    pub fn point(&self, fx: f64, fy: f64) -> (f64, f64) {
        (self.x + fx * self.w, self.y + fy * self.h)
    }

    /// Zoomed by `factor` (above 1: closer) keeping the map point `(px, py)` where it is on
    /// screen; never closer than a tenth of the map, never further than all of it.
    pub fn zoom_at(self, px: f64, py: f64, factor: f64) -> View {
        let w = (self.w / factor).clamp(MIN_WIDTH, WIDTH);
        let scale = w / self.w;
        View {
            x: px - (px - self.x) * scale,
            y: py - (py - self.y) * scale,
            w,
            h: self.h * scale,
        }
        .kept_on_map()
    }

    /// Moved by `(dx, dy)` map units, as far as the map goes.
    pub fn pan(self, dx: f64, dy: f64) -> View {
        View {
            x: self.x + dx,
            y: self.y + dy,
            ..self
        }
        .kept_on_map()
    }

    /// Centred on `(px, py)`, `w` wide.
    pub fn around(px: f64, py: f64, w: f64) -> View {
        let w = w.clamp(MIN_WIDTH, WIDTH);
        let h = w * HEIGHT / WIDTH;
        View {
            x: px - w / 2.0,
            y: py - h / 2.0,
            w,
            h,
        }
        .kept_on_map()
    }

    /// Whether the whole map is in view.
    pub fn is_whole(&self) -> bool {
        *self == View::default()
    }

    fn kept_on_map(self) -> View {
        View {
            x: self.x.clamp(0.0, WIDTH - self.w),
            y: self.y.clamp(0.0, HEIGHT - self.h),
            ..self
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: (f64, f64), b: (f64, f64)) -> bool {
        (a.0 - b.0).abs() < 1e-9 && (a.1 - b.1).abs() < 1e-9
    }

    #[test]
    fn zooming_keeps_the_point_under_the_pointer() {
        let v = View::default().zoom_at(150.0, 90.0, 2.0);
        assert_eq!((v.w, v.h), (WIDTH / 2.0, HEIGHT / 2.0));
        // (150, 90) was a quarter of the way across and down; it still is.
        assert!(close(v.point(0.25, 0.25), (150.0, 90.0)), "{v:?}");
        let closer = v.zoom_at(200.0, 100.0, 1.5);
        let (fx, fy) = ((200.0 - v.x) / v.w, (100.0 - v.y) / v.h);
        assert!(close(closer.point(fx, fy), (200.0, 100.0)), "{closer:?}");
    }

    #[test]
    fn zoom_and_pan_stay_on_the_map() {
        let far = View::default().zoom_at(300.0, 180.0, 0.1);
        assert!(far.is_whole(), "never further than the whole map: {far:?}");
        let mut near = View::default();
        for _ in 0..50 {
            near = near.zoom_at(590.0, 350.0, 2.0);
        }
        assert_eq!(near.w, MIN_WIDTH);
        assert!(near.x + near.w <= WIDTH && near.y + near.h <= HEIGHT);
        let panned = near.pan(-10_000.0, -10_000.0);
        assert_eq!((panned.x, panned.y), (0.0, 0.0));
        assert_eq!(View::default().pan(50.0, 50.0), View::default());
    }

    #[test]
    fn a_found_peer_is_centred() {
        let v = View::around(300.0, 100.0, 120.0);
        assert!(close(v.point(0.5, 0.5), (300.0, 100.0)), "{v:?}");
        assert!((v.w / v.h - WIDTH / HEIGHT).abs() < 1e-9);
        // Near an edge it is in view, if not centred.
        let edge = View::around(2.0, 2.0, 120.0);
        assert_eq!((edge.x, edge.y), (0.0, 0.0));
        assert_eq!(edge.attr(), "0.00 0.00 120.00 72.00");
    }
}
