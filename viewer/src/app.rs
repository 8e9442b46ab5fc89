//! The browser side (wasm32 only): builds the page's DOM, draws the charts on `<canvas>` and
//! wires the events. Entry points: [`show_study`] for the study browser, [`show_run`] for a
//! trial page. Every error and panic goes to `console.error`, so a broken page never passes
//! as a working one.

use std::cell::RefCell;
use std::rc::Rc;

use wasm_bindgen::prelude::*;
use wasm_bindgen::{Clamped, JsCast};
use web_sys::{
    CanvasRenderingContext2d, Document, Element, Event, HtmlCanvasElement, HtmlElement,
    HtmlInputElement, HtmlSelectElement, ImageData, MouseEvent, WheelEvent,
};

use crate::axis::{View, format_tick, format_time, nice_ticks};
use crate::decimate::{min_max_columns, range};
use crate::heatmap::{Agg, color_of, heatmap};
use crate::model::{Run, Study, parse_run, parse_study};
use crate::pages::{
    is_oos_means, leverage_column, monthly_grid, study_columns, trade_columns, window_metrics,
};
use crate::table::{
    Format, TableColumn, filter_rows, format_num, parse_filter, scroll_window, sort_rows,
};

type R = Result<(), JsValue>;

fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        web_sys::console::error_1(&format!("etrading viewer panicked: {info}").into());
    }));
}

fn log_error(r: R) {
    if let Err(e) = r {
        web_sys::console::error_1(&e);
    }
}

fn doc() -> Document {
    web_sys::window()
        .and_then(|w| w.document())
        .expect("a document")
}

fn el(tag: &str, class: &str, parent: &Element) -> Result<HtmlElement, JsValue> {
    let e = doc().create_element(tag)?;
    if !class.is_empty() {
        e.set_class_name(class);
    }
    parent.append_child(&e)?;
    Ok(e.dyn_into()?)
}

fn text(tag: &str, class: &str, content: &str, parent: &Element) -> Result<HtmlElement, JsValue> {
    let e = el(tag, class, parent)?;
    e.set_text_content(Some(content));
    Ok(e)
}

fn on<T: JsCast + 'static>(target: &Element, event: &str, f: impl FnMut(T) + 'static) -> R {
    let mut f = f;
    let c = Closure::<dyn FnMut(Event)>::new(move |e: Event| f(e.unchecked_into::<T>()));
    target.add_event_listener_with_callback(event, c.as_ref().unchecked_ref())?;
    c.forget();
    Ok(())
}

fn select(
    parent: &Element,
    label: &str,
    options: &[String],
    chosen: usize,
) -> Result<HtmlSelectElement, JsValue> {
    let wrap = el("label", "control", parent)?;
    wrap.set_text_content(Some(label));
    let s: HtmlSelectElement = el("select", "", &wrap)?.dyn_into()?;
    for (k, o) in options.iter().enumerate() {
        let opt = doc().create_element("option")?;
        opt.set_text_content(Some(o));
        opt.set_attribute("value", &k.to_string())?;
        s.append_child(&opt)?;
    }
    s.set_selected_index(chosen.min(options.len().saturating_sub(1)) as i32);
    Ok(s)
}

fn open_page(href: &str) -> R {
    web_sys::window()
        .ok_or("no window")?
        .location()
        .set_href(href)
}

/// A canvas sized for the device's pixel ratio, drawn in CSS pixels.
#[derive(Clone)]
struct Canvas {
    el: HtmlCanvasElement,
    ctx: CanvasRenderingContext2d,
    w: f64,
    h: f64,
    dpr: f64,
}

impl Canvas {
    fn new(parent: &Element, class: &str, w: f64, h: f64) -> Result<Canvas, JsValue> {
        let el: HtmlCanvasElement = el("canvas", class, parent)?.dyn_into()?;
        let dpr = web_sys::window()
            .map_or(1.0, |w| w.device_pixel_ratio())
            .max(1.0);
        el.set_width((w * dpr) as u32);
        el.set_height((h * dpr) as u32);
        el.style().set_property("width", &format!("{w}px"))?;
        el.style().set_property("height", &format!("{h}px"))?;
        let ctx: CanvasRenderingContext2d =
            el.get_context("2d")?.ok_or("no 2d context")?.dyn_into()?;
        Ok(Canvas { el, ctx, w, h, dpr })
    }

    fn clear(&self) -> R {
        self.ctx
            .set_transform(self.dpr, 0.0, 0.0, self.dpr, 0.0, 0.0)?;
        self.ctx.set_fill_style_str("#ffffff");
        self.ctx.fill_rect(0.0, 0.0, self.w, self.h);
        self.ctx.set_font("11px sans-serif");
        Ok(())
    }

    fn label(&self, s: &str, x: f64, y: f64, align: &str, color: &str) -> R {
        self.ctx.set_fill_style_str(color);
        self.ctx.set_text_align(align);
        self.ctx.set_text_baseline("middle");
        self.ctx.fill_text(s, x, y)
    }
}

fn rgb(c: [u8; 3]) -> String {
    format!("rgb({},{},{})", c[0], c[1], c[2])
}

/// Plot area inside a canvas: left margin for the value axis, bottom for the time axis.
#[derive(Clone, Copy)]
struct Plot {
    x0: f64,
    y0: f64,
    w: f64,
    h: f64,
}

impl Plot {
    fn of(c: &Canvas, top: f64, height: f64) -> Plot {
        Plot {
            x0: 64.0,
            y0: top,
            w: c.w - 72.0,
            h: height,
        }
    }

    fn y_of(&self, v: f64, lo: f64, hi: f64) -> f64 {
        self.y0 + self.h - (v - lo) / (hi - lo) * self.h
    }
}

fn padded(lo: f64, hi: f64) -> (f64, f64) {
    if hi > lo {
        let pad = (hi - lo) * 0.05;
        (lo - pad, hi + pad)
    } else {
        (lo - 1.0, hi + 1.0)
    }
}

/// Value axis with grid lines.
fn value_axis(c: &Canvas, p: Plot, lo: f64, hi: f64, percent: bool) -> R {
    c.ctx.set_stroke_style_str("#e4e4e4");
    c.ctx.set_line_width(1.0);
    let ticks = nice_ticks(lo.min(hi), hi.max(lo), 4);
    let step = if ticks.len() > 1 {
        ticks[1] - ticks[0]
    } else {
        0.0
    };
    for t in ticks {
        let y = p.y_of(t, lo, hi);
        c.ctx.begin_path();
        c.ctx.move_to(p.x0, y);
        c.ctx.line_to(p.x0 + p.w, y);
        c.ctx.stroke();
        let s = if percent {
            format!("{}%", format_tick(t * 100.0, step * 100.0))
        } else {
            format_tick(t, step)
        };
        c.label(&s, p.x0 - 4.0, y, "right", "#555")?;
    }
    Ok(())
}

/// Draws `y` over the view as a min/max-decimated line, one or two points per pixel column.
fn series(c: &Canvas, p: Plot, y: &[f64], view: &View, lo: f64, hi: f64, color: &str) {
    let cols = p.w.max(1.0) as usize;
    let mm = min_max_columns(y, view.start, view.end, cols);
    c.ctx.set_stroke_style_str(color);
    c.ctx.set_line_width(1.2);
    c.ctx.begin_path();
    let mut started = false;
    for (k, m) in mm.iter().enumerate() {
        let Some((a, b)) = m else { continue };
        let x = p.x0 + k as f64 + 0.5;
        if started {
            c.ctx.line_to(x, p.y_of(*a, lo, hi));
        } else {
            c.ctx.move_to(x, p.y_of(*a, lo, hi));
            started = true;
        }
        c.ctx.line_to(x, p.y_of(*b, lo, hi));
    }
    c.ctx.stroke();
}

fn x_of_bar(p: Plot, view: &View, bar: f64) -> f64 {
    p.x0 + (bar + 0.5 - view.start) / view.span() * p.w
}

fn time_axis(c: &Canvas, p: Plot, view: &View, times: &[i64]) -> R {
    let with_time = view.span() < 24.0 * 14.0;
    for k in 0..=5 {
        let bar = view.start + view.span() * f64::from(k) / 5.0;
        let i = (bar as usize).min(times.len().saturating_sub(1));
        let Some(&t) = times.get(i) else { break };
        let x = p.x0 + p.w * f64::from(k) / 5.0;
        let align = match k {
            0 => "left",
            5 => "right",
            _ => "center",
        };
        c.label(
            &format_time(t, with_time),
            x,
            p.y0 + p.h + 10.0,
            align,
            "#555",
        )?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// A virtualised table: only the visible rows exist in the DOM.

const ROW_H: f64 = 22.0;
const VISIBLE_ROWS: usize = 20;
struct VTable {
    columns: Rc<Vec<TableColumn>>,
    /// Rows shown, in display order (filtered and sorted).
    order: Vec<u32>,
    sort: Option<(usize, bool)>,
    viewport: HtmlElement,
    spacer: HtmlElement,
    body: HtmlElement,
    heads: Vec<HtmlElement>,
    rows: Vec<(HtmlElement, Vec<HtmlElement>)>,
}

impl VTable {
    fn new(
        parent: &Element,
        class: &str,
        columns: Rc<Vec<TableColumn>>,
    ) -> Result<Rc<RefCell<VTable>>, JsValue> {
        let n = columns.first().map_or(0, |c| c.values.len());
        let viewport = el("div", &format!("vtable {class}"), parent)?;
        let width = (columns.len() as f64 * 104.0).max(400.0);
        let grid = format!("repeat({}, 104px)", columns.len());
        let head = el("div", "vhead", &viewport)?;
        head.style().set_property("grid-template-columns", &grid)?;
        head.style().set_property("width", &format!("{width}px"))?;
        let mut heads = Vec::new();
        for (k, c) in columns.iter().enumerate() {
            let h = text("div", "vcell", &c.name, &head)?;
            h.set_attribute("data-col", &k.to_string())?;
            h.set_title(&format!("sort by {}", c.name));
            heads.push(h);
        }
        let spacer = el("div", "vspacer", &viewport)?;
        spacer
            .style()
            .set_property("width", &format!("{width}px"))?;
        let body = el("div", "vbody", &viewport)?;
        let mut rows = Vec::new();
        for _ in 0..VISIBLE_ROWS {
            let r = el("div", "vrow", &body)?;
            r.style().set_property("grid-template-columns", &grid)?;
            r.style().set_property("width", &format!("{width}px"))?;
            let cells = columns
                .iter()
                .map(|_| el("div", "vcell", &r))
                .collect::<Result<Vec<_>, _>>()?;
            rows.push((r, cells));
        }
        let t = Rc::new(RefCell::new(VTable {
            columns,
            order: (0..n as u32).collect(),
            sort: None,
            viewport: viewport.clone(),
            spacer,
            body,
            heads,
            rows,
        }));
        let tt = t.clone();
        on(&viewport, "scroll", move |_: Event| {
            log_error(tt.borrow().render())
        })?;
        let tt = t.clone();
        on(&head, "click", move |e: MouseEvent| {
            let col = e
                .target()
                .and_then(|t| t.dyn_into::<Element>().ok())
                .and_then(|t| t.closest("[data-col]").ok().flatten())
                .and_then(|t| t.get_attribute("data-col"))
                .and_then(|s| s.parse::<usize>().ok());
            if let Some(col) = col {
                let mut t = tt.borrow_mut();
                let descending = match t.sort {
                    Some((c, d)) if c == col => !d,
                    _ => col != 0,
                };
                t.sort = Some((col, descending));
                t.apply_sort();
                log_error(t.render());
            }
        })?;
        t.borrow().render()?;
        Ok(t)
    }

    fn apply_sort(&mut self) {
        if let Some((col, descending)) = self.sort {
            let values = &self.columns[col].values;
            sort_rows(&mut self.order, values, descending);
        }
    }

    fn set_rows(&mut self, rows: Vec<u32>) -> R {
        self.order = rows;
        self.apply_sort();
        self.viewport.set_scroll_top(0);
        self.render()
    }

    fn render(&self) -> R {
        let total = self.order.len();
        let (height, first, top) = scroll_window(
            total,
            f64::from(self.viewport.scroll_top()),
            f64::from(self.viewport.client_height()),
            ROW_H,
            VISIBLE_ROWS,
        );
        self.spacer
            .style()
            .set_property("height", &format!("{height}px"))?;
        self.body.style().set_property("top", &format!("{top}px"))?;
        for (k, (row_el, cells)) in self.rows.iter().enumerate() {
            match self.order.get(first + k) {
                Some(&row) => {
                    row_el.style().set_property("display", "grid")?;
                    row_el.set_attribute("data-row", &row.to_string())?;
                    for (c, cell) in self.columns.iter().zip(cells) {
                        cell.set_text_content(Some(&c.text(row as usize)));
                    }
                }
                None => row_el.style().set_property("display", "none")?,
            }
        }
        for (k, h) in self.heads.iter().enumerate() {
            let mark = match self.sort {
                Some((c, true)) if c == k => " \u{25bc}",
                Some((c, false)) if c == k => " \u{25b2}",
                _ => "",
            };
            h.set_text_content(Some(&format!("{}{mark}", self.columns[k].name)));
        }
        Ok(())
    }

    /// Calls `f(row)` when a row is clicked.
    fn on_row_click(t: &Rc<RefCell<VTable>>, f: impl Fn(usize) + 'static) -> R {
        let body = t.borrow().body.clone();
        on(&body, "click", move |e: MouseEvent| {
            let row = e
                .target()
                .and_then(|t| t.dyn_into::<Element>().ok())
                .and_then(|t| t.closest("[data-row]").ok().flatten())
                .and_then(|t| t.get_attribute("data-row"))
                .and_then(|s| s.parse::<usize>().ok());
            if let Some(row) = row {
                f(row);
            }
        })
    }
}

// ---------------------------------------------------------------------------------------
// The study browser.

struct StudyPage {
    study: Study,
    table: Rc<RefCell<VTable>>,
    columns: Rc<Vec<TableColumn>>,
    rows: Vec<u32>,
    status: HtmlElement,
    hx: HtmlSelectElement,
    hy: HtmlSelectElement,
    hz: HtmlSelectElement,
    hagg: HtmlSelectElement,
    heat: Canvas,
    lev: Canvas,
    isoos: Canvas,
    isoos_metric: Option<HtmlSelectElement>,
    window_metrics: Vec<String>,
    /// Column indices of the params (heatmap axes) and of the scores (values and metrics).
    param_cols: Vec<usize>,
    score_cols: Vec<usize>,
    /// Points on the scatters, for clicks: (canvas, x, y, row).
    points: Vec<(u8, f64, f64, u32)>,
}

/// Shows the study browser for an `etrading.study/1` document.
#[wasm_bindgen]
pub fn show_study(json: &str) -> R {
    install_panic_hook();
    let mut study = parse_study(json).map_err(JsValue::from)?;
    let root: Element = doc().body().ok_or("no body")?.into();
    let header = el("header", "", &root)?;
    text("h1", "", &format!("Study {}", study.study_name), &header)?;
    let links: Vec<String> = study.pages.keys().map(|k| format!("trial {k}")).collect();
    text(
        "p",
        "summary",
        &format!(
            "{} trials, directions {}; trial pages in this report: {}",
            study.n_trials,
            study.directions.join(", "),
            if links.is_empty() {
                "none".to_string()
            } else {
                links.join(", ")
            }
        ),
        &header,
    )?;
    let columns = Rc::new(study_columns(&mut study));
    let n = columns[0].values.len();
    let filter_box = el("div", "filter", &root)?;
    let input: HtmlInputElement = el("input", "", &filter_box)?.dyn_into()?;
    input.set_id("filter");
    input.set_placeholder("filter, e.g. state=COMPLETE value>0 leverage<=5");
    let status = text("span", "status", "", &filter_box)?;
    status.set_id("status");
    let table = VTable::new(&root, "trials", Rc::clone(&columns))?;
    table.borrow().viewport.set_id("trials");

    let param_cols: Vec<usize> = (0..columns.len())
        .filter(|&k| study.params.iter().any(|p| p.name == columns[k].name))
        .collect();
    let score_cols: Vec<usize> = (2..columns.len())
        .filter(|k| !param_cols.contains(k))
        .collect();
    let names = |ks: &[usize]| {
        ks.iter()
            .map(|&k| columns[k].name.clone())
            .collect::<Vec<_>>()
    };
    let charts = el("section", "charts", &root)?;
    let heat_box = el("div", "chart", &charts)?;
    text("h2", "", "Parameter heatmap", &heat_box)?;
    let controls = el("div", "controls", &heat_box)?;
    let hx = select(&controls, "x ", &names(&param_cols), 0)?;
    let hy = select(&controls, " y ", &names(&param_cols), 1)?;
    let hz = select(&controls, " metric ", &names(&score_cols), 0)?;
    let aggs: Vec<String> = Agg::ALL.iter().map(|a| a.name().to_string()).collect();
    let hagg = select(&controls, " aggregate ", &aggs, 0)?;
    let heat = Canvas::new(&heat_box, "heatmap", 560.0, 380.0)?;
    heat.el.set_id("heatmap");
    let lev_box = el("div", "chart", &charts)?;
    text("h2", "", "Leverage against score", &lev_box)?;
    let lev = Canvas::new(&lev_box, "scatter", 420.0, 300.0)?;
    lev.el.set_id("leverage");
    let io_box = el("div", "chart", &charts)?;
    text("h2", "", "In-sample against out-of-sample", &io_box)?;
    let wm = window_metrics(&columns);
    let isoos_metric = if wm.is_empty() {
        None
    } else {
        Some(select(&io_box, "metric ", &wm, 0)?)
    };
    let isoos = Canvas::new(&io_box, "scatter", 420.0, 300.0)?;
    isoos.el.set_id("isoos");

    let page = Rc::new(RefCell::new(StudyPage {
        study,
        table: table.clone(),
        columns,
        rows: (0..n as u32).collect(),
        status,
        hx,
        hy,
        hz,
        hagg,
        heat,
        lev,
        isoos,
        isoos_metric,
        window_metrics: wm,
        param_cols,
        score_cols,
        points: Vec::new(),
    }));
    page.borrow_mut().draw()?;

    let p = page.clone();
    on(&input.clone().into(), "input", move |_: Event| {
        let mut pg = p.borrow_mut();
        let r = match parse_filter(&input.value(), &pg.columns) {
            Ok(clauses) => {
                let rows = filter_rows(&pg.columns, &clauses, pg.columns[0].values.len());
                pg.status.set_class_name("status");
                pg.rows = rows.clone();
                let r = pg.table.borrow_mut().set_rows(rows);
                r.and_then(|()| pg.draw())
            }
            Err(e) => {
                pg.status.set_class_name("status error");
                pg.status.set_text_content(Some(&e));
                Ok(())
            }
        };
        log_error(r);
    })?;
    for s in {
        let pg = page.borrow();
        let mut v: Vec<Element> = vec![
            pg.hx.clone().into(),
            pg.hy.clone().into(),
            pg.hz.clone().into(),
            pg.hagg.clone().into(),
        ];
        v.extend(pg.isoos_metric.clone().map(Into::into));
        v
    } {
        let p = page.clone();
        on(&s, "change", move |_: Event| {
            log_error(p.borrow_mut().draw())
        })?;
    }
    let p = page.clone();
    VTable::on_row_click(&table, move |row| log_error(p.borrow().open(row)))?;
    for (k, c) in [page.borrow().lev.el.clone(), page.borrow().isoos.el.clone()]
        .into_iter()
        .enumerate()
    {
        let p = page.clone();
        on(&c.into(), "click", move |e: MouseEvent| {
            let pg = p.borrow();
            let (x, y) = (f64::from(e.offset_x()), f64::from(e.offset_y()));
            let nearest = pg
                .points
                .iter()
                .filter(|pt| usize::from(pt.0) == k)
                .map(|pt| ((pt.1 - x).powi(2) + (pt.2 - y).powi(2), pt.3))
                .min_by(|a, b| a.0.total_cmp(&b.0));
            if let Some((d2, row)) = nearest
                && d2 < 100.0
            {
                log_error(pg.open(row as usize));
            }
        })?;
    }
    Ok(())
}

impl StudyPage {
    fn open(&self, row: usize) -> R {
        let number = self.columns[0].values[row] as u64;
        match self.study.pages.get(&number.to_string()) {
            Some(href) => open_page(href),
            None => {
                self.status.set_class_name("status");
                self.status.set_text_content(Some(&format!(
                    "trial {number} has no page in this report (etrading report --study {} --trial {number} writes one)",
                    self.study.study_name
                )));
                Ok(())
            }
        }
    }

    fn draw(&mut self) -> R {
        self.status.set_text_content(Some(&format!(
            "{} of {} trials",
            self.rows.len(),
            self.columns[0].values.len()
        )));
        self.points.clear();
        self.draw_heatmap()?;
        let score = self
            .columns
            .iter()
            .position(|c| c.name == "value" || c.name == "value_0");
        match (leverage_column(&self.columns), score) {
            (Some(l), Some(s)) => {
                let cols = Rc::clone(&self.columns);
                let (x, y) = (&cols[l].values, &cols[s].values);
                self.scatter(0, x, y, "leverage", &cols[s].name)?;
            }
            _ => {
                self.lev.clear()?;
                self.lev.label(
                    "no `leverage` param or objective value in this study",
                    10.0,
                    20.0,
                    "left",
                    "#555",
                )?;
            }
        }
        match &self.isoos_metric {
            Some(s) => {
                let metric = self.window_metrics[s.selected_index().max(0) as usize].clone();
                let (is, oos) = is_oos_means(&self.columns, &metric, self.columns[0].values.len());
                self.scatter(
                    1,
                    &is,
                    &oos,
                    &format!("IS {metric} (mean of windows)"),
                    &format!("OOS {metric}"),
                )?;
            }
            None => {
                self.isoos.clear()?;
                self.isoos.label(
                    "no walk-forward attributes (is_K_metric, oos_K_metric) in this study",
                    10.0,
                    20.0,
                    "left",
                    "#555",
                )?;
            }
        }
        Ok(())
    }

    fn draw_heatmap(&self) -> R {
        // One cell per value for a param of up to 40 distinct values (a grid's 25 integer steps
        // would otherwise share equal-width bins unevenly), equal-width bins beyond.
        const HEATMAP_BINS: usize = 40;
        let c = &self.heat;
        c.clear()?;
        if self.param_cols.len() < 2 || self.score_cols.is_empty() {
            c.el.set_attribute(
                "aria-label",
                "heatmap: the study needs two params and a metric",
            )?;
            return c.label(
                "a heatmap needs two params and a metric",
                10.0,
                20.0,
                "left",
                "#555",
            );
        }
        let pick = |s: &HtmlSelectElement, ks: &[usize]| {
            ks[(s.selected_index().max(0) as usize).min(ks.len() - 1)]
        };
        let (xi, yi, zi) = (
            pick(&self.hx, &self.param_cols),
            pick(&self.hy, &self.param_cols),
            pick(&self.hz, &self.score_cols),
        );
        let agg = Agg::ALL[self.hagg.selected_index().max(0) as usize % Agg::ALL.len()];
        let cols = &self.columns;
        let h = heatmap(
            &cols[xi].values,
            &cols[yi].values,
            &cols[zi].values,
            &self.rows,
            HEATMAP_BINS,
            agg,
        );
        let p = Plot {
            x0: 90.0,
            y0: 10.0,
            w: c.w - 170.0,
            h: c.h - 50.0,
        };
        let (nx, ny) = (h.x.len(), h.y.len());
        let label_of = |col: &TableColumn, v: f64| match &col.format {
            Format::Label(l) => l.get(v as usize).cloned().unwrap_or_default(),
            _ => format_num(v, 4),
        };
        let mut aria = format!(
            "heatmap of {} ({}) by {} and {}:",
            cols[zi].name,
            agg.name(),
            cols[xi].name,
            cols[yi].name
        );
        if nx == 0 || ny == 0 {
            c.el.set_attribute("aria-label", &format!("{aria} no trials"))?;
            return c.label("no trials with both params", p.x0, 20.0, "left", "#555");
        }
        let (lo, hi) = h.range().unwrap_or((0.0, 1.0));
        let (cw, ch) = (p.w / nx as f64, p.h / ny as f64);
        for iy in 0..ny {
            for ix in 0..nx {
                let v = h.cell(ix, iy);
                let x = p.x0 + ix as f64 * cw;
                let y = p.y0 + (ny - 1 - iy) as f64 * ch;
                let t = if hi > lo { (v - lo) / (hi - lo) } else { 0.5 };
                aria.push_str(&format!(
                    " {}={} {}={}: {};",
                    cols[xi].name,
                    label_of(&cols[xi], h.x.center(ix)),
                    cols[yi].name,
                    label_of(&cols[yi], h.y.center(iy)),
                    if v.is_nan() {
                        "none".to_string()
                    } else {
                        format_num(v, 6)
                    }
                ));
                if v.is_nan() {
                    c.ctx.set_fill_style_str("#f2f2f2");
                } else {
                    c.ctx.set_fill_style_str(&rgb(color_of(t)));
                }
                c.ctx.fill_rect(x + 0.5, y + 0.5, cw - 1.0, ch - 1.0);
                if !v.is_nan() && cw >= 36.0 && ch >= 14.0 {
                    let ink = if t > 0.6 { "#000" } else { "#fff" };
                    c.label(&format_num(v, 3), x + cw / 2.0, y + ch / 2.0, "center", ink)?;
                }
            }
        }
        let step_x = (nx / 8).max(1);
        for ix in (0..nx).step_by(step_x) {
            c.label(
                &label_of(&cols[xi], h.x.center(ix)),
                p.x0 + (ix as f64 + 0.5) * cw,
                p.y0 + p.h + 10.0,
                "center",
                "#333",
            )?;
        }
        let step_y = (ny / 10).max(1);
        for iy in (0..ny).step_by(step_y) {
            c.label(
                &label_of(&cols[yi], h.y.center(iy)),
                p.x0 - 4.0,
                p.y0 + (ny - 1 - iy) as f64 * ch + ch / 2.0,
                "right",
                "#333",
            )?;
        }
        c.label(
            &cols[xi].name,
            p.x0 + p.w / 2.0,
            c.h - 10.0,
            "center",
            "#000",
        )?;
        c.label(&cols[yi].name, 4.0, p.y0 + 6.0, "left", "#000")?;
        // Colour scale.
        for k in 0..100 {
            let t = f64::from(k) / 99.0;
            c.ctx.set_fill_style_str(&rgb(color_of(t)));
            c.ctx
                .fill_rect(c.w - 60.0, p.y0 + p.h * (1.0 - t), 14.0, p.h / 99.0 + 1.0);
        }
        c.label(&format_num(hi, 3), c.w - 42.0, p.y0 + 4.0, "left", "#333")?;
        c.label(
            &format_num(lo, 3),
            c.w - 42.0,
            p.y0 + p.h - 4.0,
            "left",
            "#333",
        )?;
        c.el.set_attribute("aria-label", &aria)?;
        Ok(())
    }

    /// A scatter of the filtered trials, rasterised into an image (a million points cost one
    /// pass, not a million draw calls).
    fn scatter(&mut self, which: u8, x: &[f64], y: &[f64], xname: &str, yname: &str) -> R {
        let c = if which == 0 {
            self.lev.clone()
        } else {
            self.isoos.clone()
        };
        c.clear()?;
        let p = Plot {
            x0: 64.0,
            y0: 10.0,
            w: c.w - 76.0,
            h: c.h - 50.0,
        };
        let finite = |r: &&u32| x[**r as usize].is_finite() && y[**r as usize].is_finite();
        let rows: Vec<u32> = self.rows.iter().filter(finite).copied().collect();
        if rows.is_empty() {
            return c.label("no trials with both values", p.x0, 20.0, "left", "#555");
        }
        let ext = |v: &[f64]| {
            rows.iter()
                .map(|&r| v[r as usize])
                .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| {
                    (a.min(v), b.max(v))
                })
        };
        let (xl, xh) = padded(ext(x).0, ext(x).1);
        let (yl, yh) = padded(ext(y).0, ext(y).1);
        value_axis(&c, p, yl, yh, false)?;
        for t in nice_ticks(xl, xh, 6) {
            let px = p.x0 + (t - xl) / (xh - xl) * p.w;
            c.label(&format_num(t, 4), px, p.y0 + p.h + 10.0, "center", "#555")?;
        }
        let (dw, dh) = ((p.w * c.dpr) as usize, (p.h * c.dpr) as usize);
        let mut hits = vec![0u32; dw * dh];
        // Markers of 5 device pixels for small studies, 3 for large ones.
        let size = if rows.len() < 10_000 { 5 } else { 3 };
        for &r in &rows {
            let px = (x[r as usize] - xl) / (xh - xl) * p.w;
            let py = p.h - (y[r as usize] - yl) / (yh - yl) * p.h;
            let (dx, dy) = ((px * c.dpr) as usize, (py * c.dpr) as usize);
            if self.points.len() < 200_000 {
                self.points.push((which, p.x0 + px, p.y0 + py, r));
            }
            for oy in 0..size {
                for ox in 0..size {
                    let (qx, qy) = (dx + ox, dy + oy);
                    let half = size / 2;
                    if qx >= half && qy >= half && qx - half < dw && qy - half < dh {
                        hits[(qy - half) * dw + qx - half] += 1;
                    }
                }
            }
        }
        let max = hits.iter().copied().max().unwrap_or(1).max(1);
        let mut rgba = vec![255u8; dw * dh * 4];
        for (k, &n) in hits.iter().enumerate() {
            if n > 0 {
                let t = 0.35 + 0.65 * (f64::from(n).ln() / f64::from(max).ln().max(1e-9)).min(1.0);
                let col = color_of(1.0 - t);
                rgba[k * 4..k * 4 + 3].copy_from_slice(&col);
            }
        }
        let img =
            ImageData::new_with_u8_clamped_array_and_sh(Clamped(&rgba), dw as u32, dh as u32)?;
        c.ctx.put_image_data(&img, p.x0 * c.dpr, p.y0 * c.dpr)?;
        c.label(xname, p.x0 + p.w / 2.0, c.h - 10.0, "center", "#000")?;
        c.label(yname, p.x0 + 4.0, p.y0 + 8.0, "left", "#000")?;
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------
// The trial page.

struct TrialPage {
    run: Run,
    times: Vec<i64>,
    view: View,
    symbol: usize,
    closes: Vec<Vec<f64>>,
    equity: Vec<f64>,
    drawdown: Vec<f64>,
    margin: Vec<f64>,
    funding_cum: Vec<f64>,
    price: Canvas,
    equity_c: Canvas,
    margin_c: Canvas,
    funding_c: Canvas,
    drag: Option<f64>,
}

/// Shows the trial page for an `etrading.run/1` document.
#[wasm_bindgen]
pub fn show_run(json: &str) -> R {
    install_panic_hook();
    let mut run = parse_run(json).map_err(JsValue::from)?;
    let root: Element = doc().body().ok_or("no body")?.into();
    let pv = &run.provenance;
    let header = el("header", "", &root)?;
    let title = match &run.trial {
        Some(t) => format!(
            "{}: trial {} of study {}",
            pv.strategy_id, t.number, t.study_name
        ),
        None => pv.strategy_id.clone(),
    };
    text("h1", "", &title, &header)?;
    if run.trial.is_some() {
        let a = text("a", "", "\u{2190} study", &header)?;
        a.set_attribute("href", "index.html")?;
        a.set_id("back");
    }
    let params: Vec<String> = pv.params.iter().map(|(k, v)| format!("{k}={v}")).collect();
    text(
        "p",
        "summary",
        &format!("params {}", params.join(" ")),
        &header,
    )?;
    text(
        "p",
        "summary",
        &format!(
            "{} {} x {} bars {} .. {}; data sha256:{}; engine {}, TA-Lib {}, brackets {}; spec {}; capital {} USDT",
            pv.symbols.join(","),
            pv.interval,
            pv.bars,
            pv.first_bar.as_deref().unwrap_or("-"),
            pv.last_bar.as_deref().unwrap_or("-"),
            pv.data_hash,
            pv.engine_version,
            pv.talib_version,
            pv.brackets,
            pv.spec_file,
            pv.initial_capital
        ),
        &header,
    )?;
    let metrics = el("div", "metrics", &root)?;
    for (k, v) in &run.metrics {
        let m = el("div", "metric", &metrics)?;
        text("span", "name", k, &m)?;
        let shown = v
            .as_f64()
            .map_or_else(|| v.to_string(), |x| format_num(x, 5));
        text("span", "value", &shown, &m)?;
    }
    let charts = el("section", "timecharts", &root)?;
    let symbols: Vec<String> = run.prices.iter().map(|p| p.symbol.clone()).collect();
    let sym_select = select(&charts, "symbol ", &symbols, 0)?;
    text(
        "span",
        "hint",
        " wheel: zoom, drag: pan, double-click: all bars",
        &charts,
    )?;
    let price = Canvas::new(&charts, "timechart", 1100.0, 260.0)?;
    price.el.set_id("price");
    let equity_c = Canvas::new(&charts, "timechart", 1100.0, 240.0)?;
    equity_c.el.set_id("equity");
    let margin_c = Canvas::new(&charts, "timechart", 1100.0, 130.0)?;
    margin_c.el.set_id("margin");
    let funding_c = Canvas::new(&charts, "timechart", 1100.0, 130.0)?;
    funding_c.el.set_id("funding");
    let lower = el("section", "lower", &root)?;
    let monthly_box = el("div", "chart", &lower)?;
    text("h2", "", "Monthly returns", &monthly_box)?;
    let (years, grid) = monthly_grid(&run);
    let monthly = Canvas::new(
        &monthly_box,
        "monthly",
        620.0,
        40.0 + 24.0 * years.len().max(1) as f64,
    )?;
    monthly.el.set_id("monthly");
    draw_monthly(&monthly, &years, &grid)?;
    let win_box = el("div", "chart", &lower)?;
    text("h2", "", "Walk-forward windows", &win_box)?;
    windows_table(&run, &win_box)?;
    text("h2", "", &format!("Trades ({})", run.trades.len()), &root)?;
    let trades = VTable::new(&root, "trades", Rc::new(trade_columns(&run)))?;
    trades.borrow().viewport.set_id("trades");

    let n = run.bars.n as usize;
    let take = |c: &mut crate::model::Cells| std::mem::take(&mut c.0);
    let mut funding_cum = take(&mut run.funding_paid);
    let mut acc = 0.0;
    for f in &mut funding_cum {
        if f.is_finite() {
            acc += *f;
        }
        *f = acc;
    }
    let page = Rc::new(RefCell::new(TrialPage {
        times: run.bars.times(),
        view: View::all(n),
        symbol: 0,
        closes: run.prices.iter_mut().map(|p| take(&mut p.close)).collect(),
        equity: take(&mut run.equity),
        drawdown: take(&mut run.drawdown),
        margin: take(&mut run.margin_usage),
        funding_cum,
        run,
        price,
        equity_c,
        margin_c,
        funding_c,
        drag: None,
    }));
    page.borrow().draw()?;
    let p = page.clone();
    let s2 = sym_select.clone();
    on(&sym_select.into(), "change", move |_: Event| {
        p.borrow_mut().symbol = s2.selected_index().max(0) as usize;
        log_error(p.borrow().draw());
    })?;
    let canvases: Vec<Element> = {
        let pg = page.borrow();
        vec![
            pg.price.el.clone().into(),
            pg.equity_c.el.clone().into(),
            pg.margin_c.el.clone().into(),
            pg.funding_c.el.clone().into(),
        ]
    };
    for c in canvases {
        let p = page.clone();
        on(&c, "wheel", move |e: WheelEvent| {
            e.prevent_default();
            let mut pg = p.borrow_mut();
            let plot = Plot::of(&pg.price, 0.0, 0.0);
            let anchor = (f64::from(e.offset_x()) - plot.x0) / plot.w;
            let factor = if e.delta_y() > 0.0 { 1.25 } else { 0.8 };
            pg.view.zoom(anchor, factor);
            log_error(pg.draw());
        })?;
        let p = page.clone();
        on(&c, "mousedown", move |e: MouseEvent| {
            p.borrow_mut().drag = Some(f64::from(e.client_x()));
        })?;
        let p = page.clone();
        on(&c, "mousemove", move |e: MouseEvent| {
            let mut pg = p.borrow_mut();
            if let Some(x0) = pg.drag {
                let x = f64::from(e.client_x());
                let plot = Plot::of(&pg.price, 0.0, 0.0);
                let bars = -(x - x0) / plot.w * pg.view.span();
                pg.view.pan(bars);
                pg.drag = Some(x);
                log_error(pg.draw());
            }
        })?;
        let p = page.clone();
        on(&c, "mouseup", move |_: MouseEvent| {
            p.borrow_mut().drag = None
        })?;
        let p = page.clone();
        on(&c, "mouseleave", move |_: MouseEvent| {
            p.borrow_mut().drag = None
        })?;
        let p = page.clone();
        on(&c, "dblclick", move |_: MouseEvent| {
            let mut pg = p.borrow_mut();
            pg.view = View::all(pg.view.n);
            log_error(pg.draw());
        })?;
    }
    Ok(())
}

impl TrialPage {
    fn draw(&self) -> R {
        let v = &self.view;
        // Price with entry (triangle) and exit (circle) markers of the symbol's trades.
        let c = &self.price;
        c.clear()?;
        let p = Plot::of(c, 18.0, c.h - 40.0);
        let symbol = self
            .run
            .prices
            .get(self.symbol)
            .map_or("", |p| p.symbol.as_str());
        c.label(&format!("{symbol} close"), p.x0, 8.0, "left", "#000")?;
        if let Some(close) = self.closes.get(self.symbol)
            && let Some((lo, hi)) = range(close, v.start, v.end)
        {
            let (lo, hi) = padded(lo, hi);
            value_axis(c, p, lo, hi, false)?;
            series(c, p, close, v, lo, hi, "#1f4e9c");
            for t in self.run.trades.iter().filter(|t| t.symbol == symbol) {
                let long = t.side == "long";
                let color = if long { "#0a8a2a" } else { "#c0262d" };
                for (bar, price, entry) in [
                    (t.entry_bar, t.entry_price, true),
                    (t.exit_bar, t.exit_price, false),
                ] {
                    let b = bar as f64;
                    if b < v.start || b >= v.end {
                        continue;
                    }
                    let (x, y) = (x_of_bar(p, v, b), p.y_of(price, lo, hi));
                    c.ctx.set_fill_style_str(if entry { color } else { "#333" });
                    c.ctx.begin_path();
                    if entry {
                        let d = if long { 1.0 } else { -1.0 };
                        c.ctx.move_to(x, y);
                        c.ctx.line_to(x - 5.0, y + 9.0 * d);
                        c.ctx.line_to(x + 5.0, y + 9.0 * d);
                        c.ctx.close_path();
                    } else {
                        c.ctx.arc(x, y, 3.5, 0.0, std::f64::consts::TAU)?;
                    }
                    c.ctx.fill();
                }
            }
        }
        time_axis(c, p, v, &self.times)?;
        // Equity (top) and drawdown (bottom) on one canvas.
        let c = &self.equity_c;
        c.clear()?;
        let pe = Plot::of(c, 18.0, (c.h - 40.0) * 0.62);
        let pd = Plot::of(c, pe.y0 + pe.h + 8.0, c.h - 40.0 - pe.h - 8.0);
        c.label("equity (USDT)", pe.x0, 8.0, "left", "#000")?;
        if let Some((lo, hi)) = range(&self.equity, v.start, v.end) {
            let (lo, hi) = padded(lo, hi);
            value_axis(c, pe, lo, hi, false)?;
            series(c, pe, &self.equity, v, lo, hi, "#1f4e9c");
        }
        if let Some((_, hi)) = range(&self.drawdown, v.start, v.end) {
            let hi = hi.max(1e-9);
            value_axis(c, pd, hi, 0.0, true).ok();
            self.fill_down(c, pd, &self.drawdown, hi)?;
        }
        c.label("drawdown", pd.x0 + 4.0, pd.y0 + 8.0, "left", "#a33")?;
        time_axis(c, pd, v, &self.times)?;
        // Margin usage.
        let c = &self.margin_c;
        c.clear()?;
        let p = Plot::of(c, 18.0, c.h - 40.0);
        c.label(
            "margin usage (initial margin / equity)",
            p.x0,
            8.0,
            "left",
            "#000",
        )?;
        if let Some((_, hi)) = range(&self.margin, v.start, v.end) {
            let hi = hi.max(0.01) * 1.05;
            value_axis(c, p, 0.0, hi, true)?;
            series(c, p, &self.margin, v, 0.0, hi, "#7a3e9d");
        }
        time_axis(c, p, v, &self.times)?;
        // Funding paid, cumulative.
        let c = &self.funding_c;
        c.clear()?;
        let p = Plot::of(c, 18.0, c.h - 40.0);
        c.label(
            "funding paid, cumulative (USDT; negative: received)",
            p.x0,
            8.0,
            "left",
            "#000",
        )?;
        if let Some((lo, hi)) = range(&self.funding_cum, v.start, v.end) {
            let (lo, hi) = padded(lo.min(0.0), hi.max(0.0));
            value_axis(c, p, lo, hi, false)?;
            series(c, p, &self.funding_cum, v, lo, hi, "#b36b00");
        }
        time_axis(c, p, v, &self.times)?;
        Ok(())
    }

    /// The drawdown as a filled area hanging from zero (top) down to `max` (bottom).
    fn fill_down(&self, c: &Canvas, p: Plot, dd: &[f64], max: f64) -> R {
        let v = &self.view;
        let cols = min_max_columns(dd, v.start, v.end, p.w.max(1.0) as usize);
        c.ctx.set_fill_style_str("rgba(192,38,45,0.55)");
        for (k, m) in cols.iter().enumerate() {
            if let Some((_, hi)) = m {
                let h = hi / max * p.h;
                c.ctx.fill_rect(p.x0 + k as f64, p.y0, 1.0, h);
            }
        }
        Ok(())
    }
}

fn draw_monthly(c: &Canvas, years: &[i32], grid: &[[f64; 12]]) -> R {
    c.clear()?;
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let (x0, y0, cw, ch) = (50.0, 22.0, 46.0, 24.0);
    for (m, name) in MONTHS.iter().enumerate() {
        c.label(name, x0 + (m as f64 + 0.5) * cw, 10.0, "center", "#333")?;
    }
    if years.is_empty() {
        return c.label("no months", x0, y0 + 10.0, "left", "#555");
    }
    let scale = grid
        .iter()
        .flatten()
        .filter(|v| v.is_finite())
        .fold(1e-9f64, |a, v| a.max(v.abs()));
    for (k, (year, row)) in years.iter().zip(grid).enumerate() {
        let y = y0 + k as f64 * ch;
        c.label(&year.to_string(), x0 - 6.0, y + ch / 2.0, "right", "#333")?;
        for (m, &r) in row.iter().enumerate() {
            let x = x0 + m as f64 * cw;
            let fill = if r.is_finite() {
                // Green for gains, red for losses, stronger with size.
                let a = (r.abs() / scale).clamp(0.08, 1.0);
                if r >= 0.0 {
                    format!("rgba(10,138,42,{a:.3})")
                } else {
                    format!("rgba(192,38,45,{a:.3})")
                }
            } else {
                "#f2f2f2".to_string()
            };
            c.ctx.set_fill_style_str(&fill);
            c.ctx.fill_rect(x + 0.5, y + 0.5, cw - 1.0, ch - 1.0);
            if r.is_finite() {
                c.label(
                    &format!("{:.1}%", r * 100.0),
                    x + cw / 2.0,
                    y + ch / 2.0,
                    "center",
                    "#000",
                )?;
            }
        }
    }
    Ok(())
}

fn windows_table(run: &Run, parent: &Element) -> R {
    if run.windows.is_empty() {
        text("p", "hint", "no walk-forward windows for this run", parent)?;
        return Ok(());
    }
    let mut metrics: Vec<&String> = run
        .windows
        .iter()
        .flat_map(|w| w.is.keys().chain(w.oos.keys()))
        .collect();
    metrics.sort();
    metrics.dedup();
    let table = el("table", "windows", parent)?;
    table.set_id("windows");
    let head = el("tr", "", &table)?;
    text("th", "", "window", &head)?;
    for m in &metrics {
        text("th", "", &format!("IS {m}"), &head)?;
        text("th", "", &format!("OOS {m}"), &head)?;
    }
    let cell = |v: Option<&crate::model::Num>| {
        v.map_or(String::new(), |n| {
            if n.0.is_nan() {
                String::new()
            } else {
                format_num(n.0, 5)
            }
        })
    };
    for w in &run.windows {
        let tr = el("tr", "", &table)?;
        text("td", "", &w.window.to_string(), &tr)?;
        for m in &metrics {
            text("td", "", &cell(w.is.get(*m)), &tr)?;
            text("td", "", &cell(w.oos.get(*m)), &tr)?;
        }
    }
    Ok(())
}
