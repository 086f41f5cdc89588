//! The one-line JSON result a run prints on stdout (written by hand: flat numbers only).

use std::fmt::Write;

/// An ordered list of `"key": value` pairs.
#[derive(Default)]
pub struct Report {
    fields: Vec<(&'static str, String)>,
}

impl Report {
    /// Adds a number; non-finite values become `null`.
    pub fn num(&mut self, key: &'static str, value: f64) -> &mut Self {
        let v = if value.is_finite() { format!("{value}") } else { "null".into() };
        self.fields.push((key, v));
        self
    }

    /// Adds an optional number (`null` when absent).
    pub fn opt(&mut self, key: &'static str, value: Option<f64>) -> &mut Self {
        match value {
            Some(v) => self.num(key, v),
            None => {
                self.fields.push((key, "null".into()));
                self
            }
        }
    }

    /// Adds a string (escaped for JSON).
    pub fn text(&mut self, key: &'static str, value: &str) -> &mut Self {
        let mut s = String::from("\"");
        for c in value.chars() {
            match c {
                '"' => s.push_str("\\\""),
                '\\' => s.push_str("\\\\"),
                c if (c as u32) < 0x20 => {
                    let _ = write!(s, "\\u{:04x}", c as u32);
                }
                c => s.push(c),
            }
        }
        s.push('"');
        self.fields.push((key, s));
        self
    }

    /// The JSON object on one line.
    pub fn to_json(&self) -> String {
        let body: Vec<String> = self.fields.iter().map(|(k, v)| format!("\"{k}\":{v}")).collect();
        format!("{{{}}}", body.join(","))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_flat_json() {
        let mut r = Report::default();
        r.text("mode", "e\"cho").num("rate", 1.5).opt("cpu", None).num("bad", f64::NAN);
        assert_eq!(r.to_json(), r#"{"mode":"e\"cho","rate":1.5,"cpu":null,"bad":null}"#);
    }
}
