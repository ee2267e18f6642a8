//! Job-script templates (`cluster/templates/*.sbatch.tmpl`), rendered with minijinja: the
//! template holds the whole script, `#SBATCH` lines included (`{% if partition %}`), so
//! a site can change any line of it without touching code. An unknown variable is an
//! error naming it and the known ones.

use minijinja::{AutoEscape, Environment, UndefinedBehavior, Value};
use std::collections::BTreeMap;

/// Renders `template` with `vars`; `Err` says what is wrong (no file name: the caller
/// adds it).
pub fn render_template(template: &str, vars: &BTreeMap<&str, Value>) -> Result<String, String> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.set_auto_escape_callback(|_| AutoEscape::None);
    // Block tags take their own line away, so `{% if x %}` lines leave no blank line.
    env.set_trim_blocks(true);
    env.set_lstrip_blocks(true);
    env.set_keep_trailing_newline(true);
    let tmpl = env.template_from_str(template).map_err(|e| format!("{e:#}"))?;
    let unknown: Vec<String> =
        tmpl.undeclared_variables(false).into_iter().filter(|v| !vars.contains_key(v.as_str())).collect();
    if !unknown.is_empty() {
        let known: Vec<&str> = vars.keys().copied().collect();
        return Err(format!("unknown template variable(s) {}; known: {}", unknown.join(", "), known.join(", ")));
    }
    tmpl.render(vars).map_err(|e| format!("{e:#}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn template_placeholders() {
        let vars: BTreeMap<&str, Value> = [("a", Value::from("1")), ("b", Value::from("x y"))].into_iter().collect();
        assert_eq!(render_template("p {{a}} q {{ b }}", &vars).unwrap(), "p 1 q x y");
        let err = render_template("{{nope}}", &vars).unwrap_err();
        assert!(err.contains("nope"), "{err}");
    }

    #[test]
    fn optional_lines_vanish_without_blank_lines() {
        let tpl = "#!/bin/bash\n{% if p %}\n#SBATCH --partition={{ p }}\n{% endif %}\n{% for l in extra %}\n{{ l }}\n{% endfor %}\necho\n";
        let mut vars: BTreeMap<&str, Value> = BTreeMap::new();
        vars.insert("p", Value::from(()));
        vars.insert("extra", Value::from(Vec::<String>::new()));
        assert_eq!(render_template(tpl, &vars).unwrap(), "#!/bin/bash\necho\n");
        vars.insert("p", Value::from("gpu"));
        vars.insert("extra", Value::from(vec!["#SBATCH --exclusive".to_string()]));
        assert_eq!(
            render_template(tpl, &vars).unwrap(),
            "#!/bin/bash\n#SBATCH --partition=gpu\n#SBATCH --exclusive\necho\n"
        );
    }
}
