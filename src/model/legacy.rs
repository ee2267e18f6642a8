//! Parameter names ras wrote before its model mirrored the public code's module tree
//! (checkpoints of ras 0.1 up to this change): renamed to today's names when such a
//! checkpoint is loaded. One way: nothing writes the old names any more.
//!
//! | before                                        | now                                                   |
//! |-----------------------------------------------|-------------------------------------------------------|
//! | `…forward_layers.{t}.learned_embed.weight`     | `transformer.decoder.embed_layers.{t}.weight`          |
//! | `…forward_layers.{t}.multihead_attn.*`         | `…forward_layers.{t}.output_transBlock.attn.*`         |
//! | `…forward_layers.{t}.{linear1,linear2,norm1,norm2}.*` | `…forward_layers.{t}.output_transBlock.{…}.*`  |
//! | `…forward_layers.{t}.norm_out.*`               | `…forward_layers.{t}.output_norm.*`                    |
//!
//! The UniAD baseline's names (`transformer.decoder.layers.{i}.*`) did not change.

const STEP: &str = "transformer.decoder.forward_layers.";

/// Today's name for a name written before the public module tree, or None when `name` is
/// not an old one. Any prefix before `transformer.` is kept (`model.`, `optim.exp_avg.`).
pub fn upgrade(name: &str) -> Option<String> {
    let start = name.find(STEP)?;
    let (prefix, rest) = (&name[..start], &name[start + STEP.len()..]);
    let (t, tail) = rest.split_once('.')?;
    t.parse::<usize>().ok()?;
    if let Some(x) = tail.strip_prefix("learned_embed.") {
        return Some(format!("{prefix}transformer.decoder.embed_layers.{t}.{x}"));
    }
    let new_tail = if let Some(x) = tail.strip_prefix("multihead_attn.") {
        format!("output_transBlock.attn.{x}")
    } else if ["linear1.", "linear2.", "norm1.", "norm2."].iter().any(|p| tail.starts_with(p)) {
        format!("output_transBlock.{tail}")
    } else if let Some(x) = tail.strip_prefix("norm_out.") {
        format!("output_norm.{x}")
    } else {
        return None;
    };
    Some(format!("{prefix}{STEP}{t}.{new_tail}"))
}

/// `(name, value)` pairs with every old name replaced by today's.
pub fn upgrade_all<T>(items: impl IntoIterator<Item = (String, T)>) -> Vec<(String, T)> {
    items.into_iter().map(|(n, v)| (upgrade(&n).unwrap_or(n), v)).collect()
}

#[cfg(test)]
mod tests {
    use super::upgrade;

    #[test]
    fn old_names_map_to_the_public_ones_and_others_stay() {
        let f = "transformer.decoder.forward_layers.3";
        for (old, new) in [
            (format!("model.{f}.learned_embed.weight"), "model.transformer.decoder.embed_layers.3.weight".to_string()),
            (
                format!("optim.exp_avg.{f}.multihead_attn.in_proj_weight"),
                format!("optim.exp_avg.{f}.output_transBlock.attn.in_proj_weight"),
            ),
            (format!("{f}.linear2.bias"), format!("{f}.output_transBlock.linear2.bias")),
            (format!("{f}.norm1.weight"), format!("{f}.output_transBlock.norm1.weight")),
            (format!("{f}.norm_out.bias"), format!("{f}.output_norm.bias")),
        ] {
            assert_eq!(upgrade(&old).as_deref(), Some(new.as_str()), "{old}");
        }
        for same in [
            format!("{f}.adaptive_gate.weight"),
            format!("{f}.output_transBlock.attn.in_proj_bias"),
            format!("{f}.output_norm.weight"),
            "transformer.decoder.layers.0.multihead_attn.in_proj_bias".to_string(),
            "transformer.encoder.layers.0.norm1.weight".to_string(),
        ] {
            assert_eq!(upgrade(&same), None, "{same}");
        }
    }
}
