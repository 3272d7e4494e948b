//! The chart `penny pooling --svg` writes: a bar for each row Penny ran and each of the
//! lecture's, the time for 10,000 calls on a log scale, readable on a slide.

use super::{LECTURE, LECTURE_CALLS, Report, Way, human_seconds, in_unit};
use crate::views::Thousands;
use plotters::coord::ranged1d::SegmentValue;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

/// The fill of Penny's bars (rust), and of the lecture's (Python's blue). No other shape in
/// the chart has either, so a bar can be told by its colour.
pub const PENNY_BAR: RGBColor = RGBColor(0xB7, 0x41, 0x0E);
pub const LECTURE_BAR: RGBColor = RGBColor(0x30, 0x69, 0x98);

const WIDTH: u32 = 1280;
const FONT: &str = "sans-serif";

struct Bar {
    label: String,
    seconds: f64,
    /// The time written at the bar's end.
    value: String,
    colour: RGBColor,
}

/// The chart as an SVG document. Rows that made no call have no bar.
pub fn chart_svg(report: &Report) -> Result<String, String> {
    let bars = bars(report);
    let height = 160 + 56 * bars.len() as u32;
    let mut svg = String::new();
    draw(&bars, report, &mut svg, height).map_err(|err| format!("cannot draw the chart: {err}"))?;
    Ok(svg)
}

/// Penny's rows, each followed by the lecture's row that teaches the same.
fn bars(report: &Report) -> Vec<Bar> {
    let mut bars = Vec::new();
    let lecture = |index: usize, bars: &mut Vec<Bar>| {
        let (what, seconds) = LECTURE[index];
        bars.push(Bar {
            label: format!("lecture: {what}"),
            seconds,
            // As the lecture wrote it.
            value: format!("{seconds:.1} s"),
            colour: LECTURE_BAR,
        });
    };
    for row in &report.rows {
        if let Some(seconds) = row
            .measured
            .as_ref()
            .and_then(|m| m.seconds_for(LECTURE_CALLS))
        {
            bars.push(Bar {
                label: format!("Penny: {}", row.way.name().trim_start_matches("Penny's ")),
                seconds,
                value: human_seconds(seconds),
                colour: PENNY_BAR,
            });
        }
        match row.way {
            Way::NewConnection => lecture(0, &mut bars),
            Way::SharedConnection => lecture(1, &mut bars),
            Way::Pool => {
                lecture(2, &mut bars);
                lecture(3, &mut bars);
            }
            Way::PoolTasks(_) => {}
        }
    }
    bars
}

fn draw(
    bars: &[Bar],
    report: &Report,
    svg: &mut String,
    height: u32,
) -> Result<(), Box<dyn std::error::Error>> {
    let root = SVGBackend::with_string(svg, (WIDTH, height)).into_drawing_area();
    root.fill(&WHITE)?;
    let (low, high) = range(bars);
    let count = bars.len();
    let title = format!(
        "The search's first page, {} times: Penny (Rust) and the lecture (Python)",
        Thousands(LECTURE_CALLS)
    );
    let mut chart = ChartBuilder::on(&root)
        .caption(title, (FONT, 30))
        .margin(24)
        .margin_top(16)
        .margin_right(64)
        .margin_bottom(48)
        .x_label_area_size(70)
        .y_label_area_size(400)
        .build_cartesian_2d((low..high).log_scale(), (0..count - 1).into_segmented())?;
    // Bar 0 at the top: the segments count from the bottom.
    let slot = |index: usize| count - 1 - index;
    let label = |value: &SegmentValue<usize>| match value {
        SegmentValue::CenterOf(position) if *position < count => {
            bars[count - 1 - position].label.clone()
        }
        _ => String::new(),
    };
    let seconds = |value: &f64| tick(*value);
    let scaled = if report.calls == LECTURE_CALLS {
        String::new()
    } else {
        format!("; Penny's scaled from {} calls", Thousands(report.calls))
    };
    chart
        .configure_mesh()
        .disable_y_mesh()
        .y_labels(count)
        .y_label_formatter(&label)
        .x_label_formatter(&seconds)
        .x_desc(format!(
            "time for {} calls (log scale){scaled}",
            Thousands(LECTURE_CALLS)
        ))
        .label_style((FONT, 20))
        .axis_desc_style((FONT, 22))
        .draw()?;
    chart.draw_series(bars.iter().enumerate().map(|(index, bar)| {
        let mut rectangle = Rectangle::new(
            [
                (low, SegmentValue::Exact(slot(index))),
                (bar.seconds, SegmentValue::Exact(slot(index) + 1)),
            ],
            bar.colour.filled(),
        );
        rectangle.set_margin(8, 8, 0, 0);
        rectangle
    }))?;
    let value_style =
        TextStyle::from((FONT, 20).into_font()).pos(Pos::new(HPos::Left, VPos::Center));
    chart.draw_series(bars.iter().enumerate().map(|(index, bar)| {
        Text::new(
            bar.value.clone(),
            (bar.seconds * 1.08, SegmentValue::CenterOf(slot(index))),
            value_style.clone(),
        )
    }))?;
    // A key in words and colours, not in shapes: every filled shape is a bar.
    let key = |text: &str, colour: &RGBColor, x: i32| -> Result<(), Box<dyn std::error::Error>> {
        let style = TextStyle::from((FONT, 20).into_font()).color(colour);
        root.draw(&Text::new(text.to_string(), (x, height as i32 - 36), style))?;
        Ok(())
    };
    let via = if report.pgbouncer {
        " through PgBouncer"
    } else {
        ""
    };
    key(
        &format!("■ Penny, measured here{via} (pool of {})", report.pool_size),
        &PENNY_BAR,
        24,
    )?;
    key("■ the lecture, in Python", &LECTURE_BAR, 640)?;
    root.present()?;
    Ok(())
}

/// A tick of the time axis: 1 s, 10 ms, 100 µs.
fn tick(seconds: f64) -> String {
    let (value, unit) = in_unit(seconds);
    let text = format!("{value:.2}");
    let text = text.trim_end_matches('0').trim_end_matches('.');
    format!("{text} {unit}")
}

/// The time axis: from a power of ten below half the shortest bar to one above the longest, with
/// room for the longest bar's label.
fn range(bars: &[Bar]) -> (f64, f64) {
    let shortest = bars
        .iter()
        .map(|bar| bar.seconds)
        .fold(f64::INFINITY, f64::min);
    let longest = bars.iter().map(|bar| bar.seconds).fold(0.0, f64::max);
    let low = 10f64.powf((shortest.max(1e-6) / 2.0).log10().floor());
    let high = 10f64.powf((longest.max(low) * 3.0).log10().ceil());
    (low, high)
}
