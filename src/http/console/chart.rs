//! The overview's 30-day chart, drawn as inline SVG on the server: four
//! bars a day (deposits, conversations, picked, rejections), each with a
//! tooltip title, and a text alternative; the page also carries the same
//! figures as a table.

use chrono::NaiveDate;
use std::fmt::Write as _;

#[derive(Debug, Clone)]
pub(crate) struct DayFigures {
    pub(crate) day: NaiveDate,
    pub(crate) deposits: i64,
    pub(crate) conversations: i64,
    pub(crate) picked: i64,
    pub(crate) rejections: i64,
}

impl DayFigures {
    pub(crate) fn new(day: NaiveDate) -> Self {
        DayFigures {
            day,
            deposits: 0,
            conversations: 0,
            picked: 0,
            rejections: 0,
        }
    }

    pub(crate) fn add(&mut self, o: &DayFigures) {
        self.deposits += o.deposits;
        self.conversations += o.conversations;
        self.picked += o.picked;
        self.rejections += o.rejections;
    }

    pub(crate) fn label(&self) -> String {
        self.day.format("%Y-%m-%d").to_string()
    }
}

/// The series: name and colour (dark enough on white for 3:1 contrast).
pub(crate) const SERIES: [(&str, &str); 4] = [
    ("deposits", "#1f4e9c"),
    ("conversations", "#1b7a3a"),
    ("picked", "#8a4b00"),
    ("rejections", "#b3261e"),
];

const W: i64 = 960;
const H: i64 = 240;
const LEFT: i64 = 48;
const BOTTOM: i64 = 36;
const TOP: i64 = 12;

pub(crate) fn svg(days: &[DayFigures]) -> String {
    let max = days
        .iter()
        .flat_map(|d| [d.deposits, d.conversations, d.picked, d.rejections])
        .max()
        .unwrap_or(0)
        .max(1);
    // Even, so the middle guide line is a whole number.
    let max = max + max % 2;
    let plot_h = H - BOTTOM - TOP;
    let slot = (W - LEFT - 8) / days.len().max(1) as i64;
    let bar = ((slot - 4) / 4).max(1);
    let total: i64 = days.iter().map(|d| d.conversations).sum();
    let mut out = String::new();
    let _ = write!(
        out,
        r#"<svg class="chart" viewBox="0 0 {W} {H}" role="img" aria-labelledby="chart-title" xmlns="http://www.w3.org/2000/svg"><title id="chart-title">Daily deposits, conversations, picked conversations and rejections over the last {} days ({total} conversations)</title>"#,
        days.len()
    );
    // Axis and three guide lines with their values.
    for i in 0..=2 {
        let v = max * i / 2;
        let y = TOP + plot_h - plot_h * i / 2;
        let _ = write!(
            out,
            r##"<line x1="{LEFT}" x2="{W}" y1="{y}" y2="{y}" stroke="#c8c8c8" stroke-width="1"/><text x="{}" y="{}" text-anchor="end" font-size="12" fill="#333">{v}</text>"##,
            LEFT - 6,
            y + 4
        );
    }
    for (i, d) in days.iter().enumerate() {
        let x0 = LEFT + 4 + slot * i as i64;
        let values = [d.deposits, d.conversations, d.picked, d.rejections];
        for (k, ((name, colour), v)) in SERIES.iter().zip(values).enumerate() {
            let h = plot_h * v / max;
            let _ = write!(
                out,
                r#"<rect x="{}" y="{}" width="{bar}" height="{h}" fill="{colour}"><title>{}: {v} {name}</title></rect>"#,
                x0 + bar * k as i64,
                TOP + plot_h - h,
                d.label()
            );
        }
        // A date every five days keeps the labels readable.
        if i % 5 == 0 || i + 1 == days.len() {
            let _ = write!(
                out,
                r##"<text x="{}" y="{}" font-size="12" fill="#333">{}</text>"##,
                x0,
                H - BOTTOM + 16,
                d.day.format("%d/%m")
            );
        }
    }
    out.push_str("</svg>");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bars_scale_to_the_largest_value() {
        let d0 = NaiveDate::from_ymd_opt(2026, 2, 1).unwrap();
        let mut days: Vec<DayFigures> = (0..30)
            .map(|i| DayFigures::new(d0 + chrono::Duration::days(i)))
            .collect();
        days[3].deposits = 10;
        days[3].rejections = 5;
        let s = svg(&days);
        assert!(s.starts_with("<svg") && s.ends_with("</svg>"));
        assert_eq!(s.matches("<rect").count(), 120);
        assert!(s.contains(r##"height="192" fill="#1f4e9c"><title>2026-02-04: 10 deposits"##));
        assert!(s.contains(r##"height="96" fill="#b3261e"><title>2026-02-04: 5 rejections"##));
        assert!(s.contains("2026-02-04: 5 rejections"));
    }
}
