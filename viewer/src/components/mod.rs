//! The viewer's components: one file per page or widget.

mod cluster;
mod confidence;
mod curve;
mod grid;
mod help;
mod histogram;
mod images;
mod map;
mod notes_bar;
mod overview;
mod per_class;
mod picture;
mod retraining;
mod tree;

pub use cluster::ClusterPage;
pub use confidence::ToolConfidence;
pub use curve::{Curve, Scales as CurveScales};
pub use grid::{GridControls, ImageGrid, Open};
pub use help::Help;
pub use histogram::HistogramChart;
pub use images::ImagesPage;
pub use map::MapView;
pub use notes_bar::NotesBar;
pub use overview::Overview;
pub use per_class::PerClass;
pub use picture::Picture;
pub use retraining::RetrainingSummary;
pub use tree::{CutCards, TreeView};

/// The colour of cluster `i` (0-based; ten colours, repeating).
pub fn cluster_colour(i: usize) -> &'static str {
    const TEN: [&str; 10] =
        ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"];
    TEN[i % TEN.len()]
}

/// `0.8497` → `84.97%`.
pub fn percent(x: f64) -> String {
    format!("{:.2}%", 100.0 * x)
}

/// A number in at most 4 significant figures.
pub fn short(x: f64) -> String {
    if x == 0.0 || !x.is_finite() {
        return format!("{x}");
    }
    let digits = (3 - x.abs().log10().floor() as i32).clamp(0, 6) as usize;
    format!("{x:.digits$}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_short() {
        assert_eq!(percent(0.8497), "84.97%");
        assert_eq!(short(0.0123456), "0.01235");
        assert_eq!(short(1234.5), "1234");
        assert_eq!(short(2.5), "2.500");
    }
}
