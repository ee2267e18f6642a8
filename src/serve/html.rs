//! HTML pieces of the pages: escaping, the page frame (style and script compiled in, no
//! CDN), tables, Markdown tables of the report as HTML tables, and report cells coloured
//! by how far they are from the paper.

use std::fmt::Write;

/// The stylesheet and the live-update script, compiled into the binary (served as
/// /assets/style.css and /assets/live.js: the pages load nothing from anywhere else).
pub(super) const STYLE: &str = include_str!("assets/style.css");
pub(super) const SCRIPT: &str = include_str!("assets/live.js");

/// `text` safe inside HTML text and attribute values.
pub fn esc(text: &str) -> String {
    let mut s = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => s.push_str("&amp;"),
            '<' => s.push_str("&lt;"),
            '>' => s.push_str("&gt;"),
            '"' => s.push_str("&quot;"),
            '\'' => s.push_str("&#39;"),
            c => s.push(c),
        }
    }
    s
}

/// `text` as one path segment of a URL (run ids and sweep names are `[A-Za-z0-9._-]`;
/// anything else is percent-encoded all the same).
pub fn url_part(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// A whole page: `main` is what live updates replace (the same HTML the fragment
/// endpoint answers), `refresh_ms` how often the script asks whether it changed (0: never).
pub fn page(title: &str, store: &str, main: &str, version: &str, refresh_ms: u64) -> String {
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <link rel=\"icon\" href=\"data:,\">\
         <title>{title} - ras</title><link rel=\"stylesheet\" href=\"/assets/style.css\"></head>\n<body>\
         <header><a href=\"/\" class=\"brand\">ras</a> <span class=\"store\">store {store}</span>\
         <span id=\"live\" class=\"live\"></span></header>\n\
         <main id=\"page\" data-refresh-ms=\"{refresh_ms}\" data-etag=\"{version}\">{main}</main>\n\
         <script src=\"/assets/live.js\"></script></body></html>\n",
        title = esc(title),
        store = esc(store),
        version = esc(version),
    )
}

/// A table: a header row and rows of cells already in HTML.
pub fn table(class: &str, header: &[&str], rows: &[Vec<String>]) -> String {
    let mut s = format!("<table class=\"{class}\"><thead><tr>");
    for h in header {
        let _ = write!(s, "<th>{}</th>", esc(h));
    }
    s += "</tr></thead><tbody>";
    for r in rows {
        s += "<tr>";
        for c in r {
            let _ = write!(s, "<td>{c}</td>");
        }
        s += "</tr>";
    }
    s + "</tbody></table>"
}

/// A box saying something is wrong (escaped).
pub fn problem(text: &str) -> String {
    format!("<div class=\"problem\">{}</div>", esc(text))
}

/// How far one of our cells is from the paper's number: its class for colouring, from
/// the difference the cell itself shows (`97.1 ± 0.3 (98.4, -1.3)`).
pub fn cell_class(cell: &str) -> &'static str {
    let diff = cell
        .rsplit_once(", ")
        .and_then(|(_, d)| d.strip_suffix(')'))
        .and_then(|d| d.trim_start_matches('+').parse::<f64>().ok());
    match diff {
        None if cell == "cancelled" => "cell cancelled",
        None => "cell nopaper",
        Some(d) if d.abs() <= 1.0 => "cell close",
        Some(d) if d.abs() <= 3.0 => "cell near",
        Some(_) => "cell far",
    }
}

/// The report's paper-layout tables: every cell exactly as `ras report` writes it, in
/// a `<td>` coloured by [`cell_class`] (the first column is the row's label).
pub fn grid(g: &crate::report::layout::Grid) -> String {
    let mut s = format!("<h3>{}</h3><table class=\"paper\"><thead><tr>", esc(&g.title));
    for h in &g.header {
        let _ = write!(s, "<th>{}</th>", esc(h));
    }
    s += "</tr></thead><tbody>";
    for row in &g.rows {
        s += "<tr>";
        for (i, c) in row.iter().enumerate() {
            if i == 0 {
                let _ = write!(s, "<th scope=\"row\">{}</th>", esc(c));
            } else {
                let _ = write!(s, "<td class=\"{}\">{}</td>", cell_class(c), esc(c));
            }
        }
        s += "</tr>";
    }
    s + "</tbody></table>"
}

/// Markdown as `ras report` writes it (headings, `> ` quotes, `- ` items, `|` tables,
/// paragraphs) as HTML: the report's text shown as it is, never re-worded.
pub fn markdown(md: &str) -> String {
    let mut out = String::new();
    let mut table: Vec<Vec<String>> = vec![];
    let flush = |out: &mut String, table: &mut Vec<Vec<String>>| {
        if table.is_empty() {
            return;
        }
        let header = table.remove(0);
        let _ = write!(out, "<table class=\"md\"><thead><tr>");
        for h in &header {
            let _ = write!(out, "<th>{}</th>", inline(h));
        }
        out.push_str("</tr></thead><tbody>");
        for r in table.drain(..) {
            out.push_str("<tr>");
            for c in r {
                let _ = write!(out, "<td>{}</td>", inline(&c));
            }
            out.push_str("</tr>");
        }
        out.push_str("</tbody></table>");
    };
    // A fenced block (```) is kept as it is, in <pre>.
    let mut code: Option<String> = None;
    for line in md.lines() {
        let t = line.trim();
        if t.starts_with("```") {
            flush(&mut out, &mut table);
            match code.take() {
                Some(block) => {
                    let _ = write!(out, "<pre>{}</pre>", esc(&block));
                }
                None => code = Some(String::new()),
            }
            continue;
        }
        if let Some(block) = code.as_mut() {
            block.push_str(line);
            block.push('\n');
            continue;
        }
        if t.starts_with('|') {
            let cells: Vec<String> = t.trim_matches('|').split('|').map(|c| c.trim().to_string()).collect();
            // The separator under the header.
            if !cells.iter().all(|c| !c.is_empty() && c.chars().all(|ch| "-:".contains(ch))) {
                table.push(cells);
            }
            continue;
        }
        flush(&mut out, &mut table);
        if let Some(h) = t.strip_prefix("## ") {
            let _ = write!(out, "<h3>{}</h3>", inline(h));
        } else if let Some(h) = t.strip_prefix("# ") {
            let _ = write!(out, "<h2>{}</h2>", inline(h));
        } else if let Some(q) = t.strip_prefix('>') {
            let _ = write!(out, "<p class=\"quote\">{}</p>", inline(q.trim()));
        } else if let Some(i) = t.strip_prefix("- ") {
            let _ = write!(out, "<p class=\"item\">&bull; {}</p>", inline(i));
        } else if !t.is_empty() {
            let _ = write!(out, "<p>{}</p>", inline(t));
        }
    }
    flush(&mut out, &mut table);
    if let Some(block) = code {
        let _ = write!(out, "<pre>{}</pre>", esc(&block));
    }
    out
}

/// One line of Markdown: escaped, with `code` and **bold**.
fn inline(text: &str) -> String {
    let mut s = String::new();
    for (i, part) in esc(text).split('`').enumerate() {
        if i % 2 == 1 {
            let _ = write!(s, "<code>{part}</code>");
        } else {
            for (j, p) in part.split("**").enumerate() {
                if j % 2 == 1 {
                    let _ = write!(s, "<b>{p}</b>");
                } else {
                    s += p;
                }
            }
        }
    }
    s
}

/// A Unix time as `YYYY-MM-DD HH:MM:SS UTC`.
pub fn when(unix: i64) -> String {
    let days = unix.div_euclid(86_400);
    let secs = unix.rem_euclid(86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} UTC", secs / 3600, secs % 3600 / 60, secs % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cells_are_coloured_by_the_difference_they_show() {
        assert_eq!(cell_class("97.1 ± 0.3 (98.4, -1.3)"), "cell near");
        assert_eq!(cell_class("97.1 (97.0, +0.1)"), "cell close");
        assert_eq!(cell_class("80.0 (98.4, -18.4)"), "cell far");
        assert_eq!(cell_class("97.1 (-)"), "cell nopaper");
        assert_eq!(cell_class("cancelled"), "cell cancelled");
    }

    #[test]
    fn text_is_escaped_and_markdown_tables_become_tables() {
        assert_eq!(esc("<a href=\"x\">&'"), "&lt;a href=&quot;x&quot;&gt;&amp;&#39;");
        let h = markdown("## Cost\n\n| a | b |\n|---|---:|\n| 1 | <x> |\n\n> note `k`\n");
        assert_eq!(
            h,
            "<h3>Cost</h3><table class=\"md\"><thead><tr><th>a</th><th>b</th></tr></thead><tbody><tr><td>1</td><td>&lt;x&gt;</td></tr></tbody></table><p class=\"quote\">note <code>k</code></p>"
        );
        assert_eq!(url_part("a b/c"), "a%20b%2Fc");
    }

    #[test]
    fn times_read_as_utc_dates() {
        assert_eq!(when(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(when(1_764_806_400), "2025-12-04 00:00:00 UTC");
    }
}
