//! A self-contained HTML page for a run: the matrix with verdicts, and per
//! cell its checks, its numbers and two plots drawn as inline SVG (no
//! script or style is fetched from anywhere): the run-delay distribution
//! (CDF) of each group, and each group's CPU share over time. A small
//! script at the end counts the plots the browser actually laid out, so a
//! test in headless Chromium can tell that they render. Pure.

use std::collections::BTreeSet;
use std::fmt::Write;
use std::time::Duration;

use crate::agent::{Pass, PassKind};
use crate::compare::{CompareReport, MetricComparison};
use crate::report::{esc, short, CellResult, CellVerdict};
use crate::stats::Verdict;

const COLOURS: &[&str] = &[
    "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf",
];
const W: f64 = 520.0;
const H: f64 = 240.0;
const PAD: f64 = 46.0;

fn anchor(r: &CellResult) -> String {
    format!("cell-{}-{}-{}", r.kernel_name, r.scheduler, r.scenario)
        .replace(|c: char| !c.is_ascii_alphanumeric() && c != '-', "-")
}

/// The cell's verdict as the matrix shows it: `pass*` when a bound of a
/// property the scheduler does not claim did not hold (its title says which).
fn verdict_mark(r: &CellResult) -> (String, String) {
    let unheld: Vec<String> = r
        .checks
        .iter()
        .filter(|c| c.unclaimed.is_some() && !c.pass)
        .map(|c| c.status())
        .collect();
    match unheld.is_empty() {
        true => (r.verdict.label().to_string(), String::new()),
        false => (format!("{}*", r.verdict.label()), unheld.join(", ")),
    }
}

fn verdict_class(v: CellVerdict) -> &'static str {
    match v {
        CellVerdict::Pass => "pass",
        CellVerdict::Fail => "fail",
        CellVerdict::Error => "error",
        CellVerdict::NotRun => "notrun",
    }
}

/// The whole page.
pub fn page(results: &[CellResult], compare: Option<&CompareReport>) -> String {
    let mut out = String::new();
    let count = |v| results.iter().filter(|r| r.verdict == v).count();
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>scx-harness run</title><style>{STYLE}</style></head><body>\n\
         <h1>scx-harness run</h1>\n<p class=\"summary\">{} cells: \
         <span class=\"pass\">{} pass</span>, <span class=\"fail\">{} fail</span>, \
         <span class=\"error\">{} error</span>, <span class=\"notrun\">{} not run</span>{}</p>\n",
        results.len(),
        count(CellVerdict::Pass),
        count(CellVerdict::Fail),
        count(CellVerdict::Error),
        count(CellVerdict::NotRun),
        {
            // Every kernel of the run, in order of appearance.
            let mut kernels: Vec<String> = Vec::new();
            for r in results {
                let k = match r.kernel_name.as_str() {
                    "" => format!("{} ({})", esc(&r.kernel), esc(&r.kernel_id)),
                    n => format!("{} {} ({})", esc(n), esc(&r.kernel), esc(&r.kernel_id)),
                };
                if !kernels.contains(&k) {
                    kernels.push(k);
                }
            }
            results
                .first()
                .map(|r| format!("; kernel {}, {}", kernels.join("; "), esc(&r.accel)))
                .unwrap_or_default()
        }
    );
    let mut plots = 0;
    if let Some(c) = compare {
        out.push_str(&comparison(c, &mut plots));
    }
    out.push_str(&matrix(results));
    for r in results {
        out.push_str(&cell(r, &mut plots));
    }
    out.push_str(&plot_counter(plots));
    out.push_str("</body></html>\n");
    out
}

/// A script that counts the plots the browser laid out (a plot is an SVG
/// with a drawn line of non-zero size) beside the `expected` count, as
/// `data-plots-rendered` and `data-plots-expected` on the body.
fn plot_counter(expected: usize) -> String {
    format!(
        "<script>\n\
         (function () {{\n\
           var n = 0;\n\
           document.querySelectorAll('svg.plot').forEach(function (svg) {{\n\
             var line = svg.querySelector('polyline');\n\
             if (line && line.getBBox().width > 0) n++;\n\
           }});\n\
           document.body.setAttribute('data-plots-expected', '{expected}');\n\
           document.body.setAttribute('data-plots-rendered', String(n));\n\
         }})();\n\
         </script>\n"
    )
}

const STYLE: &str = "body{font-family:sans-serif;margin:1.5em;color:#222}\
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:.2em .5em;text-align:left}\
td.num{text-align:right;font-variant-numeric:tabular-nums}\
.pass{color:#176117}.fail{color:#b00}.error{color:#a15c00}.notrun{color:#666}\
td.pass{background:#e6f4e6}td.fail{background:#fbe3e3}td.error{background:#fdf0dc}td.notrun{background:#eee}\
section{border-top:2px solid #ddd;margin-top:1.5em}svg.plot{border:1px solid #ddd;margin:.3em}\
pre{background:#f6f6f6;padding:.5em;white-space:pre-wrap}";

fn matrix(results: &[CellResult]) -> String {
    let scenarios: BTreeSet<&str> = results.iter().map(|r| r.scenario.as_str()).collect();
    // One row per scheduler, per kernel when the run had several.
    let mut rows: Vec<(&str, &str)> = Vec::new();
    for r in results {
        if !rows.contains(&(r.kernel_name.as_str(), r.scheduler.as_str())) {
            rows.push((&r.kernel_name, &r.scheduler));
        }
    }
    let kernels: BTreeSet<&str> = rows.iter().map(|(k, _)| *k).collect();
    let several = kernels.len() > 1;
    let mut t = String::from("<h2>Matrix</h2>\n<table id=\"matrix\"><tr>");
    if several {
        t.push_str("<th>kernel</th>");
    }
    t.push_str("<th>scheduler</th>");
    for s in &scenarios {
        let _ = write!(t, "<th>{}</th>", esc(s));
    }
    t.push_str("</tr>\n");
    for (kernel, sched) in &rows {
        t.push_str("<tr>");
        if several {
            let _ = write!(t, "<th>{}</th>", esc(kernel));
        }
        let _ = write!(t, "<th>{}</th>", esc(sched));
        for s in &scenarios {
            match results
                .iter()
                .find(|r| r.kernel_name == *kernel && r.scheduler == *sched && r.scenario == *s)
            {
                Some(r) => {
                    let (label, title) = verdict_mark(r);
                    let _ = write!(
                        t,
                        "<td class=\"{}\" title=\"{}\"><a href=\"#{}\">{}</a></td>",
                        verdict_class(r.verdict),
                        esc(&title),
                        anchor(r),
                        esc(&label)
                    );
                }
                None => t.push_str("<td></td>"),
            }
        }
        t.push_str("</tr>\n");
    }
    t.push_str("</table>\n");
    if results
        .iter()
        .any(|r| r.checks.iter().any(|c| c.unclaimed.is_some() && !c.pass))
    {
        t.push_str(
            "<p>* a bound on a property the scheduler does not claim did not hold \
             (schedulers/registry.yaml <code>claims:</code>); not a failure.</p>\n",
        );
    }
    t
}

fn cell(r: &CellResult, plots: &mut usize) -> String {
    let mut s = format!(
        "<section id=\"{}\"><h2>{}{} / {}: <span class=\"{}\">{}</span></h2>\n\
         <p>scheduler version {}; scenario hash {}; {:.1} s; files: <code>{}</code></p>\n",
        anchor(r),
        match r.kernel_name.as_str() {
            "" => String::new(),
            k => format!("{} / ", esc(k)),
        },
        esc(&r.scheduler),
        esc(&r.scenario),
        verdict_class(r.verdict),
        r.verdict.label(),
        if r.scheduler_version.is_empty() {
            "(the kernel's)".to_string()
        } else {
            esc(&r.scheduler_version)
        },
        esc(&r.scenario_hash),
        r.elapsed_s,
        esc(&r.dir.display().to_string())
    );
    if r.verdict != CellVerdict::Pass || r.checks.iter().any(|c| c.unclaimed.is_some()) {
        let _ = writeln!(s, "<pre>{}</pre>", esc(&r.summary));
    }
    if !r.checks.is_empty() {
        s.push_str("<table><tr><th>check</th><th>observed</th><th>bound</th><th></th><th>detail</th></tr>\n");
        for c in &r.checks {
            let _ = writeln!(
                s,
                "<tr><td>{}</td><td class=\"num\">{}</td><td>{}</td><td class=\"{}\">{}</td><td>{}</td></tr>",
                esc(&c.name),
                esc(&c.observed),
                esc(&c.bound),
                match (c.unclaimed, c.pass) {
                    (Some(_), _) => "notrun",
                    (None, true) => "pass",
                    (None, false) => "fail",
                },
                esc(&c.status()),
                esc(&c.detail)
            );
        }
        s.push_str("</table>\n");
    }
    if let Some(a) = &r.agent {
        let main = a.pass(PassKind::Scheduler);
        let fair = a.pass(PassKind::Fair);
        if let Some(p) = main {
            s.push_str(&metrics(p, r.cpus));
            s.push_str(&cdf_plot(p, fair, plots));
            s.push_str(&share_plot(p, r.cpus, plots));
        }
        if let Some(rep) = a.scheduler.as_ref().filter(|rep| !rep.events.is_empty()) {
            s.push_str(
                "<table class=\"events\"><tr><th>sched_ext event (the kernel's counter over the attachment)</th><th>count</th></tr>\n",
            );
            for (name, count) in &rep.events {
                let _ = writeln!(
                    s,
                    "<tr><td>{}</td><td class=\"num\">{count}</td></tr>",
                    esc(name)
                );
            }
            s.push_str("</table>\n");
        }
    }
    s.push_str("</section>\n");
    s
}

fn metrics(p: &Pass, cpus: u32) -> String {
    let mut t = String::from(
        "<table><tr><th>group</th><th>CPU</th><th>wakeups</th><th>p50</th><th>p90</th><th>p99</th><th>p99.9</th><th>max</th><th>iterations/s</th></tr>\n",
    );
    let window = p.window();
    for g in &p.groups {
        let h = &g.probe.run_delay;
        let q = |x: f64| h.quantile(x).map_or("-".into(), short);
        let cpu = p.cpu_share(g, cpus);
        let _ = writeln!(
            t,
            "<tr><td>{}</td><td class=\"num\">{:.1}%</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{:.0}</td></tr>",
            esc(&g.name),
            cpu * 100.0,
            h.count(),
            q(0.5),
            q(0.9),
            q(0.99),
            q(0.999),
            short(Duration::from_nanos(p.max_run_delay(g))),
            g.iterations_window() as f64 / window.as_secs_f64().max(1e-9)
        );
    }
    t.push_str("</table>\n");
    let rows = crate::report::app_rows(p);
    if !rows.is_empty() {
        t.push_str("<table><tr><th>group</th><th>application metric</th><th>value</th><th>better</th></tr>\n");
        for r in rows {
            let _ = writeln!(
                t,
                "<tr><td>{}</td><td>{}</td><td class=\"num\">{}</td><td>{}</td></tr>",
                esc(&r.group),
                esc(&r.metric),
                esc(&r.value),
                r.better
            );
        }
        t.push_str("</table>\n");
    }
    t
}

/// Frame, axes and legend of a plot; `body` holds the data.
fn svg(
    title: &str,
    x_label: &str,
    y_label: &str,
    x_ticks: &[(f64, String)],
    y_ticks: &[(f64, String)],
    legend: &[(String, &str, bool)],
    body: &str,
) -> String {
    let mut s = format!(
        "<svg class=\"plot\" xmlns=\"http://www.w3.org/2000/svg\" width=\"{W}\" height=\"{H}\" viewBox=\"0 0 {W} {H}\">\
         <text x=\"{}\" y=\"14\" font-size=\"12\" text-anchor=\"middle\">{}</text>\
         <rect x=\"{PAD}\" y=\"20\" width=\"{}\" height=\"{}\" fill=\"none\" stroke=\"#999\"/>",
        W / 2.0,
        esc(title),
        W - PAD - 10.0,
        H - 20.0 - PAD
    );
    for (x, l) in x_ticks {
        let _ = write!(
            s,
            "<text x=\"{x:.1}\" y=\"{}\" font-size=\"10\" text-anchor=\"middle\">{}</text>",
            H - PAD + 14.0,
            esc(l)
        );
    }
    for (y, l) in y_ticks {
        let _ = write!(
            s,
            "<text x=\"{}\" y=\"{:.1}\" font-size=\"10\" text-anchor=\"end\">{}</text>",
            PAD - 4.0,
            y + 3.0,
            esc(l)
        );
    }
    let _ = write!(
        s,
        "<text x=\"{}\" y=\"{}\" font-size=\"11\" text-anchor=\"middle\">{}</text>\
         <text x=\"12\" y=\"{}\" font-size=\"11\" text-anchor=\"middle\" transform=\"rotate(-90 12 {})\">{}</text>",
        PAD + (W - PAD - 10.0) / 2.0,
        H - 8.0,
        esc(x_label),
        (H - PAD) / 2.0 + 10.0,
        (H - PAD) / 2.0 + 10.0,
        esc(y_label)
    );
    s.push_str(body);
    for (i, (name, colour, dashed)) in legend.iter().enumerate() {
        let y = 30.0 + 13.0 * i as f64;
        let _ = write!(
            s,
            "<line x1=\"{}\" y1=\"{y}\" x2=\"{}\" y2=\"{y}\" stroke=\"{colour}\" stroke-width=\"2\"{}/>\
             <text x=\"{}\" y=\"{}\" font-size=\"10\">{}</text>",
            W - 150.0,
            W - 132.0,
            if *dashed { " stroke-dasharray=\"4 3\"" } else { "" },
            W - 128.0,
            y + 3.0,
            esc(name)
        );
    }
    s.push_str("</svg>\n");
    s
}

fn x_of(frac: f64) -> f64 {
    PAD + frac.clamp(0.0, 1.0) * (W - PAD - 10.0)
}

fn y_of(frac: f64) -> f64 {
    (H - PAD) - frac.clamp(0.0, 1.0) * (H - 20.0 - PAD)
}

/// The run-delay CDF of each group, delay on a log axis; the fair-class
/// pass dashed beside it when there is one.
fn cdf_plot(p: &Pass, fair: Option<&Pass>, plots: &mut usize) -> String {
    let mut series = Vec::new();
    for (pass, dashed, suffix) in
        std::iter::once((p, false, "")).chain(fair.map(|f| (f, true, " (fair)")))
    {
        for (i, g) in pass.groups.iter().enumerate() {
            series.push((
                format!("{}{suffix}", g.name),
                g.probe.run_delay.cdf(),
                COLOURS[i % COLOURS.len()],
                dashed,
            ));
        }
    }
    cdf_svg("run delay (CDF)", "wakeup to run", &series, plots)
}

/// One line of a CDF plot: its legend, its points (ns, fraction) in
/// order, its colour, dashed or not.
type CdfSeries<'a> = (String, Vec<(u64, f64)>, &'a str, bool);

/// CDFs of times in ns on a log axis; `x_label` names the time.
fn cdf_svg(title: &str, x_label: &str, series: &[CdfSeries], plots: &mut usize) -> String {
    let (mut lo, mut hi) = (u64::MAX, 0u64);
    for (_, pts, _, _) in series {
        for &(v, _) in pts {
            lo = lo.min(v.max(1));
            hi = hi.max(v);
        }
    }
    if hi == 0 {
        return String::new();
    }
    let (llo, lhi) = (
        (lo as f64).log10().floor(),
        (hi as f64)
            .log10()
            .ceil()
            .max((lo as f64).log10().floor() + 1.0),
    );
    let xf = |ns: u64| ((ns.max(1) as f64).log10() - llo) / (lhi - llo);
    let mut body = String::new();
    let mut legend = Vec::new();
    for (name, pts, colour, dashed) in series {
        if pts.is_empty() {
            continue;
        }
        let mut path = format!("{:.1},{:.1}", x_of(xf(pts[0].0)), y_of(0.0));
        for (v, f) in pts {
            let _ = write!(path, " {:.1},{:.1}", x_of(xf(*v)), y_of(*f));
        }
        let _ = write!(
            body,
            "<polyline fill=\"none\" stroke=\"{colour}\" stroke-width=\"1.5\"{} points=\"{path}\"/>",
            if *dashed { " stroke-dasharray=\"4 3\"" } else { "" }
        );
        legend.push((name.clone(), *colour, *dashed));
    }
    let mut x_ticks = Vec::new();
    let mut e = llo;
    while e <= lhi {
        x_ticks.push((
            x_of((e - llo) / (lhi - llo)),
            short(Duration::from_nanos(10f64.powf(e) as u64)),
        ));
        e += 1.0;
    }
    let y_ticks: Vec<(f64, String)> = [0.0, 0.5, 0.9, 1.0]
        .iter()
        .map(|f| (y_of(*f), format!("{f}")))
        .collect();
    *plots += 1;
    svg(
        title, x_label, "fraction", &x_ticks, &y_ticks, &legend, &body,
    )
}

/// A comparison: per scenario the statistics per metric, the pooled
/// run-delay CDFs of both sides, and each key metric's samples side by
/// side.
fn comparison(c: &CompareReport, plots: &mut usize) -> String {
    let mut out = format!(
        "<h2>Comparison</h2>\n<p>baseline <b>{}</b> against candidate <b>{}</b>; {}; alpha {}, noise threshold {:.0}%</p>\n",
        esc(&c.baseline.label),
        esc(&c.candidate.label),
        esc(&c.stopped),
        c.alpha,
        c.noise * 100.0
    );
    for s in &c.scenarios {
        let _ = writeln!(
            out,
            "<section class=\"compare\"><h3>{}</h3><p>{} baseline and {} candidate run(s); checks failed in {} and {}</p>",
            esc(&s.scenario),
            s.runs_baseline,
            s.runs_candidate,
            s.failed_checks_baseline,
            s.failed_checks_candidate
        );
        for o in &s.outright {
            let _ = writeln!(
                out,
                "<p class=\"fail\">{} run {} failed outright: {} (<code>{}</code>)</p>",
                esc(&o.side),
                o.run + 1,
                esc(&o.reason),
                esc(&o.dir.display().to_string())
            );
        }
        if !s.metrics.is_empty() {
            if let Some(why) = s.blind(c.alpha) {
                let _ = writeln!(out, "<p class=\"fail\">{}</p>", esc(&why));
            }
            let _ = writeln!(
                out,
                "<table><tr><th>metric</th><th>baseline</th><th>candidate</th><th>ratio</th><th>{}</th><th>p (Holm)</th><th>verdict</th></tr>",
                crate::compare::ci_label(c.alpha)
            );
            for m in &s.metrics {
                let show = |v| crate::metric::show(&m.name, &m.unit, v);
                let st = &m.stats;
                let class = match st.verdict {
                    Verdict::Worse => "fail",
                    Verdict::Better => "pass",
                    _ => "",
                };
                let _ = writeln!(
                    out,
                    "<tr><td>{}{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{:.3}</td><td class=\"num\">[{:.3}, {:.3}]</td><td class=\"num\">{:.4}</td><td class=\"{class}\">{}</td></tr>",
                    esc(&m.name),
                    if m.key { "" } else { " <small>(not key)</small>" },
                    esc(&show(st.median_a)),
                    esc(&show(st.median_b)),
                    st.ratio,
                    st.ci_low,
                    st.ci_high,
                    st.p_value,
                    esc(st.verdict.label())
                );
            }
            out.push_str("</table>\n");
        }
        let mut series = Vec::new();
        for (i, (g, a, b)) in s.run_delay.iter().enumerate() {
            let colour = COLOURS[i % COLOURS.len()];
            series.push((format!("{g} (baseline)"), a.cdf(), colour, false));
            series.push((format!("{g} (candidate)"), b.cdf(), colour, true));
        }
        out.push_str(&cdf_svg(
            "run delay, all runs pooled (CDF)",
            "wakeup to run",
            &series,
            plots,
        ));
        for m in s.metrics.iter().filter(|m| m.key) {
            out.push_str(&strip_plot(m, plots));
        }
        out.push_str("</section>\n");
    }
    out
}

/// The axis range of `values`' finite ones: lowest to highest, widened
/// around a single value so that it has a height; None when none is
/// finite.
fn span(values: impl Iterator<Item = f64>) -> Option<(f64, f64)> {
    let (lo, hi) = values
        .filter(|v| v.is_finite())
        .fold((f64::MAX, f64::MIN), |(l, h), v| (l.min(v), h.max(v)));
    match (lo > hi, hi > lo) {
        (true, _) => None,
        (false, true) => Some((lo, hi)),
        (false, false) => Some((lo * 0.9, hi * 1.1 + 1e-9)),
    }
}

/// One metric's samples, baseline and candidate side by side, each with
/// its median as a line.
fn strip_plot(m: &MetricComparison, plots: &mut usize) -> String {
    let show = |v| crate::metric::show(&m.name, &m.unit, v);
    let Some((lo, hi)) = span(m.baseline.iter().chain(&m.candidate).copied()) else {
        return String::new();
    };
    let yf = |v: f64| (v - lo) / (hi - lo);
    let mut body = String::new();
    for (i, (side, xs)) in [("baseline", &m.baseline), ("candidate", &m.candidate)]
        .iter()
        .enumerate()
    {
        let centre = 0.25 + 0.5 * i as f64;
        let colour = COLOURS[i];
        for (j, v) in xs.iter().enumerate() {
            // Spread the dots sideways a little so equal values stay visible.
            let dx = ((j % 7) as f64 - 3.0) * 0.012;
            let _ = write!(
                body,
                "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"3\" fill=\"{colour}\" fill-opacity=\"0.7\"><title>{side}: {}</title></circle>",
                x_of(centre + dx),
                y_of(yf(*v)),
                esc(&show(*v))
            );
        }
        let med = crate::stats::median(xs);
        if med.is_finite() {
            let _ = write!(
                body,
                "<polyline fill=\"none\" stroke=\"{colour}\" stroke-width=\"2\" points=\"{:.1},{:.1} {:.1},{:.1}\"/>",
                x_of(centre - 0.1),
                y_of(yf(med)),
                x_of(centre + 0.1),
                y_of(yf(med))
            );
        }
    }
    let x_ticks = vec![
        (x_of(0.25), "baseline".to_string()),
        (x_of(0.75), "candidate".to_string()),
    ];
    let y_ticks: Vec<(f64, String)> = [0.0, 0.5, 1.0]
        .iter()
        .map(|f| (y_of(*f), show(lo + f * (hi - lo))))
        .collect();
    *plots += 1;
    svg(&m.name, "", "", &x_ticks, &y_ticks, &[], &body)
}

/// Each group's share of the VM's CPU time, per timeline step.
fn share_plot(p: &Pass, cpus: u32, plots: &mut usize) -> String {
    if p.timeline.len() < 2 {
        return String::new();
    }
    let t_end = p.timeline.last().map_or(1, |(t, _)| *t).max(1) as f64;
    let mut body = String::new();
    let mut legend = Vec::new();
    for (i, g) in p.groups.iter().enumerate() {
        let colour = COLOURS[i % COLOURS.len()];
        let mut pts = Vec::new();
        for w in p.timeline.windows(2) {
            let (t0, a) = (&w[0].0, &w[0].1);
            let (t1, b) = (&w[1].0, &w[1].1);
            let dt = (t1 - t0) as f64 * f64::from(cpus);
            if dt <= 0.0 {
                continue;
            }
            let used = b
                .get(i)
                .copied()
                .unwrap_or(0)
                .saturating_sub(a.get(i).copied().unwrap_or(0)) as f64;
            pts.push(format!(
                "{:.1},{:.1}",
                x_of(*t1 as f64 / t_end),
                y_of(used / dt)
            ));
        }
        if pts.is_empty() {
            continue;
        }
        let _ = write!(
            body,
            "<polyline fill=\"none\" stroke=\"{colour}\" stroke-width=\"1.5\" points=\"{}\"/>",
            pts.join(" ")
        );
        legend.push((g.name.clone(), colour, false));
    }
    let secs = t_end / 1e9;
    let x_ticks: Vec<(f64, String)> = (0..=4)
        .map(|k| {
            let f = f64::from(k) / 4.0;
            (x_of(f), format!("{:.1}s", secs * f))
        })
        .collect();
    let y_ticks: Vec<(f64, String)> = [0.0, 0.25, 0.5, 0.75, 1.0]
        .iter()
        .map(|f| (y_of(*f), format!("{:.0}%", f * 100.0)))
        .collect();
    *plots += 1;
    svg(
        "CPU share over time",
        "time since start",
        "share of the VM",
        &x_ticks,
        &y_ticks,
        &legend,
        &body,
    )
}

/// The page of a sweep (`sweep.html`): each point's objective values (dots,
/// median bar; grey when dropped or failed, green for the best, dashed
/// references), the frontier's scatter when one was asked for, and the
/// table with each point against the defaults with its interval. Pure.
pub fn sweep_page(r: &crate::sweep::Report) -> String {
    use crate::sweep::{PointKind, Status};
    let mut plots = 0usize;
    let colour = |p: &crate::sweep::PointSummary| match (&p.status, p.point.kind) {
        (Status::Best, _) => "#2ca02c",
        (Status::Dropped { .. } | Status::Failed { .. }, _) => "#aaaaaa",
        (_, PointKind::Defaults) => "#1f77b4",
        (_, PointKind::FairClass) => "#9467bd",
        _ => "#ff7f0e",
    };
    let mut out = format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>scx-harness sweep</title><style>{STYLE}</style></head><body>\n\
         <h1>sweep of {}</h1>\n<p class=\"summary\">objective {} ({} is better); {} run(s) in {} round(s), {:.0} s; seed {}; {}; stopped: {}</p>\n",
        esc(&r.scheduler),
        esc(&r.objective.to_string()),
        match r.objective.better {
            crate::stats::Better::Higher => "higher",
            _ => "lower",
        },
        r.runs,
        r.rounds,
        r.seconds,
        r.seed,
        if r.racing { "raced" } else { "the full grid" },
        esc(&r.stopped)
    );
    // The objective, point by point.
    if let Some((lo, hi)) = span(
        r.points
            .iter()
            .flat_map(|p| p.metrics[0].samples.iter().copied()),
    ) {
        let yf = |v: f64| (v - lo) / (hi - lo);
        let show = |v| crate::metric::show(&r.objective.metric, "", v);
        let n = r.points.len() as f64;
        let mut body = String::new();
        for (i, p) in r.points.iter().enumerate() {
            let c = colour(p);
            let centre = (i as f64 + 0.5) / n;
            for (j, v) in p.metrics[0].samples.iter().enumerate() {
                let dx = ((j % 5) as f64 - 2.0) * 0.004;
                let _ = write!(
                    body,
                    "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"3\" fill=\"{c}\" fill-opacity=\"0.7\"><title>{}: {}</title></circle>",
                    x_of(centre + dx),
                    y_of(yf(*v)),
                    esc(&p.point.label),
                    esc(&show(*v))
                );
            }
            if let Some(med) = p.metrics[0].median {
                let _ = write!(
                    body,
                    "<polyline fill=\"none\" stroke=\"{c}\" stroke-width=\"2\"{} points=\"{:.1},{:.1} {:.1},{:.1}\"/>",
                    if p.point.kind == PointKind::Grid { "" } else { " stroke-dasharray=\"4 3\"" },
                    x_of(centre - 0.3 / n),
                    y_of(yf(med)),
                    x_of(centre + 0.3 / n),
                    y_of(yf(med))
                );
            }
        }
        let x_ticks: Vec<(f64, String)> = r
            .points
            .iter()
            .enumerate()
            .map(|(i, p)| (x_of((i as f64 + 0.5) / n), p.point.label.clone()))
            .collect();
        let y_ticks: Vec<(f64, String)> = [0.0, 0.5, 1.0]
            .iter()
            .map(|f| (y_of(*f), show(lo + f * (hi - lo))))
            .collect();
        plots += 1;
        out.push_str(&svg(
            &r.objective.to_string(),
            "",
            "",
            &x_ticks,
            &y_ticks,
            &[],
            &body,
        ));
    }
    // The frontier: medians of its two metrics.
    if let Some((a, b)) = &r.frontier {
        let pts: Vec<(&crate::sweep::PointSummary, f64, f64)> = r
            .points
            .iter()
            .filter_map(|p| Some((p, p.metrics[1].median?, p.metrics[2].median?)))
            .collect();
        if let (Some((xl, xh)), Some((yl, yh))) =
            (span(pts.iter().map(|p| p.1)), span(pts.iter().map(|p| p.2)))
        {
            let mut body = String::new();
            let mut front: Vec<(f64, f64)> = pts
                .iter()
                .filter(|(p, _, _)| p.on_frontier)
                .map(|(_, x, y)| ((x - xl) / (xh - xl), (y - yl) / (yh - yl)))
                .collect();
            front.sort_by(|u, v| u.0.partial_cmp(&v.0).unwrap_or(std::cmp::Ordering::Equal));
            let line: Vec<String> = front
                .iter()
                .map(|(x, y)| format!("{:.1},{:.1}", x_of(*x), y_of(*y)))
                .collect();
            // A tick under each frontier point first (the plot counter
            // looks at the first line: a one-point frontier has no width),
            // then the line through them.
            for (x, y) in &front {
                let _ = write!(
                    body,
                    "<polyline fill=\"none\" stroke=\"#2ca02c\" stroke-width=\"2\" points=\"{:.1},{:.1} {:.1},{:.1}\"/>",
                    x_of(*x) - 6.0,
                    y_of(*y) + 8.0,
                    x_of(*x) + 6.0,
                    y_of(*y) + 8.0
                );
            }
            let _ = write!(
                body,
                "<polyline fill=\"none\" stroke=\"#2ca02c\" stroke-width=\"1.5\" points=\"{}\"/>",
                line.join(" ")
            );
            for (p, x, y) in &pts {
                let _ = write!(
                    body,
                    "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"{}\" fill=\"{}\"><title>{}: {}, {}</title></circle>",
                    x_of((x - xl) / (xh - xl)),
                    y_of((y - yl) / (yh - yl)),
                    if p.on_frontier { 5 } else { 3 },
                    colour(p),
                    esc(&p.point.label),
                    esc(&crate::metric::show(&a.metric, "", *x)),
                    esc(&crate::metric::show(&b.metric, "", *y))
                );
            }
            let ticks = |l: f64, h: f64, m: &str, at: &dyn Fn(f64) -> f64| -> Vec<(f64, String)> {
                [0.0, 0.5, 1.0]
                    .iter()
                    .map(|f| (at(*f), crate::metric::show(m, "", l + f * (h - l))))
                    .collect()
            };
            plots += 1;
            out.push_str(&svg(
                "the frontier (medians)",
                &a.to_string(),
                &b.to_string(),
                &ticks(xl, xh, &a.metric, &x_of),
                &ticks(yl, yh, &b.metric, &y_of),
                &[],
                &body,
            ));
        }
    }
    let _ = write!(
        out,
        "<pre>{}</pre>\n{}</body></html>\n",
        esc(&crate::sweep::table(r)),
        plot_counter(plots)
    );
    out
}

/// `replay-check`'s page: the fidelity, and per group its figures and each
/// distribution the file draws from beside the replay's own (CDFs on a
/// log axis, the recorded solid, the replayed dashed).
pub fn fidelity_page(f: &crate::record::fidelity::Fidelity) -> String {
    let mut plots = 0usize;
    let mut out = format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>scx-harness replay-check</title><style>{STYLE}</style></head><body>\n\
         <h1>replay-check of {}</h1>\n<p class=\"summary\">fidelity {:.2}: <span class=\"{}\">{}</span> \
         (the lowest scored figure's score; 1 is exact, 0.5 off by a factor of two)</p>\n",
        esc(&f.scenario),
        f.score,
        if f.pass { "pass" } else { "fail" },
        if f.pass {
            "every figure within its mark"
        } else {
            "a figure missed its mark"
        }
    );
    for n in &f.notes {
        let _ = writeln!(out, "<p>note: {}</p>", esc(n));
    }
    for (i, g) in f.groups.iter().enumerate() {
        let _ = write!(
            out,
            "<section><h2>{} <span class=\"{}\">{}</span></h2>\n<table><tr><th>figure</th><th>recorded</th><th>replayed</th><th>score</th><th>mark</th></tr>\n",
            esc(&g.group),
            if g.pass { "pass" } else { "fail" },
            if g.pass { "pass" } else { "FAIL" }
        );
        for x in &g.figures {
            let _ = writeln!(
                out,
                "<tr><td>{}</td><td class=\"num\">{:.3}</td><td class=\"num\">{:.3}</td><td class=\"num {}\">{:.2}</td><td class=\"num\">{}</td></tr>",
                esc(&x.name),
                x.recorded,
                x.replayed,
                if x.pass { "pass" } else { "fail" },
                x.score,
                x.mark.map_or("shown".to_string(), |m| format!("{m:.2}"))
            );
        }
        out.push_str("</table>\n");
        let colour = COLOURS[i % COLOURS.len()];
        // Quantiles at evenly spaced ranks as a CDF's points.
        let cdf = |q: &[u64]| -> Vec<(u64, f64)> {
            let last = q.len().saturating_sub(1).max(1) as f64;
            q.iter()
                .enumerate()
                .map(|(i, &v)| (v, i as f64 / last))
                .collect()
        };
        for d in &g.distributions {
            let series = [
                ("recorded".to_string(), cdf(&d.recorded_ns), colour, false),
                ("replayed".to_string(), cdf(&d.replayed_ns), colour, true),
            ];
            out.push_str(&cdf_svg(
                &format!("{} {} (CDF)", g.group, d.name),
                if d.name == "run" {
                    "burst (CPU time)"
                } else {
                    "sleep"
                },
                &series,
                &mut plots,
            ));
        }
        out.push_str("</section>\n");
    }
    out.push_str(&plot_counter(plots));
    out.push_str("</body></html>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping() {
        assert_eq!(
            esc("<a href=\"x\">&</a>"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&lt;/a&gt;"
        );
    }

    #[test]
    fn the_fidelity_page_draws_each_distribution_beside_the_replays() {
        use crate::record::fidelity::{Distribution, Fidelity, GroupScore};
        let q = |from: u64| (0..21).map(|i| from + i * 100_000).collect::<Vec<u64>>();
        let f = Fidelity {
            scenario: "cap<1>".into(),
            groups: vec![GroupScore {
                group: "server".into(),
                figures: vec![],
                distributions: vec![
                    Distribution {
                        name: "run".into(),
                        recorded_ns: q(1_000_000),
                        replayed_ns: q(1_100_000),
                    },
                    Distribution {
                        name: "sleep".into(),
                        recorded_ns: q(5_000_000),
                        replayed_ns: vec![],
                    },
                ],
                score: 0.0,
                pass: false,
            }],
            score: 0.0,
            pass: false,
            notes: vec!["a note".into()],
        };
        let page = fidelity_page(&f);
        assert!(page.contains("replay-check of cap&lt;1&gt;"), "{page}");
        assert_eq!(page.matches("<svg class=\"plot\"").count(), 2, "{page}");
        assert!(page.contains("'data-plots-expected', '2'"), "{page}");
        // Recorded solid, replayed dashed (its line and its legend's); a
        // replay with no quantiles draws no line.
        assert_eq!(page.matches("<polyline").count(), 3, "{page}");
        assert_eq!(page.matches("stroke-dasharray").count(), 2, "{page}");
        assert!(page.contains("note: a note"), "{page}");
    }
}
