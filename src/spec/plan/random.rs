//! `[random]`: the sampled parameters and their draws (`samples`, a seed per sweep).
use super::*;

pub(super) fn random_samples(
    src: &Source,
    r: &Spanned<Params>,
    name: &str,
    base: &Point,
) -> Result<(Vec<Draw>, Dims), SpecError> {
    let mut samples: Option<usize> = None;
    let mut dists = Vec::new();
    for (k, v) in r.get_ref() {
        if k.get_ref() == "samples" {
            match v.get_ref().as_integer() {
                Some(n) if (1..=100_000).contains(&n) => samples = Some(n as usize),
                _ => {
                    return Err(at(
                        src,
                        v,
                        "`samples` must be an integer between 1 and 100000",
                        None,
                    ));
                }
            }
            continue;
        }
        if matches!(k.get_ref().as_str(), "sampler" | "startup") {
            continue; // search::sampler_settings
        }
        if !base.is_program() && !PARAM_KEYS.contains(&k.get_ref().as_str()) {
            return Err(unknown_key(src, k));
        }
        let Some(table) = v.get_ref().as_table().filter(|t| t.len() == 1) else {
            return Err(at(
                src,
                v,
                format!("random `{}` must be one distribution", k.get_ref()),
                Some(DIST_HELP.into()),
            ));
        };
        let Some((kind, arg)) = table.iter().next() else {
            return Err(at(src, v, "empty distribution", Some(DIST_HELP.into())));
        };
        let dist = match (kind.as_str(), arg) {
            ("choice", Value::Array(a)) if !a.is_empty() => {
                // Check every choice, not only those this sweep happens to draw.
                for item in a {
                    base.check(src, k, &Spanned::new(v.span(), item.clone()))?;
                }
                Dist::Choice(a.clone())
            }
            ("uniform" | "loguniform" | "int", Value::Array(a)) if a.len() == 2 => {
                let lo = a[0].as_float().or(a[0].as_integer().map(|i| i as f64));
                let hi = a[1].as_float().or(a[1].as_integer().map(|i| i as f64));
                match (lo, hi) {
                    // Finite bounds with a finite width: rand panics otherwise. For
                    // loguniform the same holds for the logs (two adjacent large
                    // floats have equal logarithms: an empty range).
                    (Some(lo), Some(hi))
                        if lo < hi
                            && (hi - lo).is_finite()
                            && (kind != "loguniform" || (lo > 0.0 && lo.ln() < hi.ln())) =>
                    {
                        match kind.as_str() {
                            "uniform" => Dist::Uniform(lo, hi),
                            "loguniform" => Dist::LogUniform(lo, hi),
                            _ => {
                                let (lo, hi) = (lo.round() as i64, hi.round() as i64);
                                // Both ends can be drawn: check them now.
                                for end in [lo, hi] {
                                    base.check(
                                        src,
                                        k,
                                        &Spanned::new(v.span(), Value::Integer(end)),
                                    )?;
                                }
                                Dist::Int(lo, hi)
                            }
                        }
                    }
                    _ => {
                        return Err(at(
                            src,
                            v,
                            format!(
                                "`{kind}` needs finite [low, high] with low < high{}",
                                if kind == "loguniform" {
                                    " and low > 0 (and ln(low) < ln(high))"
                                } else {
                                    ""
                                }
                            ),
                            None,
                        ));
                    }
                }
            }
            _ => {
                return Err(at(
                    src,
                    v,
                    format!("invalid distribution for `{}`", k.get_ref()),
                    Some(DIST_HELP.into()),
                ));
            }
        };
        dists.push((k.clone(), v.span(), dist));
    }
    let Some(n) = samples else {
        return Err(at(src, r, "[random] needs `samples = N`", None));
    };
    // Seeded by the sweep name: the same file always draws the same trials.
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(name_seed(name));
    let mut out = Vec::new();
    for _ in 0..n {
        let mut draw = Vec::new();
        for (k, span, d) in &dists {
            let value = match d {
                Dist::Choice(a) => a[rng.gen_range(0..a.len())].clone(),
                Dist::Uniform(lo, hi) => Value::Float(rng.gen_range(*lo..*hi)),
                Dist::LogUniform(lo, hi) => Value::Float((rng.gen_range(lo.ln()..hi.ln())).exp()),
                Dist::Int(lo, hi) => Value::Integer(rng.gen_range(*lo..=*hi)),
            };
            let sv = Spanned::new(span.clone(), value);
            base.check(src, k, &sv)?;
            draw.push((k.clone(), sv));
        }
        out.push(draw);
    }
    Ok((out, dists))
}

/// `sampler = "lhs"`: a Latin hypercube of `n` points over the same
/// distributions. Each dimension's range (in log space for `loguniform`,
/// its values for `int`, its list for `choice`) is cut into `n` equal
/// strata and each stratum holds exactly one point, at a random place in
/// it; the strata are paired at random between dimensions. So `n` points
/// cover every part of every range, where `n` independent draws leave gaps
/// (5 draws miss a given fifth of a range one time in three); a
/// `choice` gets each of its k values ⌊n/k⌋ or ⌈n/k⌉ times. Seeded by the
/// sweep name, like the random draws: the same file, the same points.
pub(super) fn latin_hypercube(
    src: &Source,
    dists: &Dims,
    n: usize,
    name: &str,
    base: &Point,
) -> Result<Vec<Draw>, SpecError> {
    use rand::seq::SliceRandom;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(name_seed(name) ^ 0x6c68_7300);
    let mut out: Vec<Draw> = vec![Vec::with_capacity(dists.len()); n];
    for (k, span, d) in dists {
        let mut strata: Vec<usize> = (0..n).collect();
        strata.shuffle(&mut rng);
        for (draw, stratum) in out.iter_mut().zip(strata) {
            // A place in [stratum/n, (stratum+1)/n).
            let u = ((stratum as f64 + rng.gen_range(0.0..1.0)) / n as f64).min(1.0 - f64::EPSILON);
            let value = match d {
                // Stratum i of n takes choice ⌊i·k/n⌋: each one ⌊n/k⌋ or ⌈n/k⌉ times.
                Dist::Choice(a) => a[(stratum * a.len() / n).min(a.len() - 1)].clone(),
                Dist::Uniform(lo, hi) => Value::Float(lo + u * (hi - lo)),
                Dist::LogUniform(lo, hi) => {
                    Value::Float((lo.ln() + u * (hi.ln() - lo.ln())).exp().clamp(*lo, *hi))
                }
                Dist::Int(lo, hi) => {
                    let width = (hi - lo + 1) as f64;
                    Value::Integer((lo + (u * width) as i64).min(*hi))
                }
            };
            let sv = Spanned::new(span.clone(), value);
            base.check(src, k, &sv)?;
            draw.push((k.clone(), sv));
        }
    }
    Ok(out)
}

pub(super) const DIST_HELP: &str =
    "use { choice = [...] }, { uniform = [a, b] }, { loguniform = [a, b] } or { int = [a, b] }";

pub(super) fn unknown_key(src: &Source, k: &Spanned<String>) -> SpecError {
    let word = k.get_ref();
    let help = if word == "seed" {
        "seeds are set for the whole sweep: [sweep] seeds = [0, 1, 2]".to_string()
    } else {
        match did_you_mean(word, PARAM_KEYS) {
            Some(s) => format!("did you mean `{s}`?"),
            None => format!("valid parameters: {}", PARAM_KEYS.join(", ")),
        }
    };
    at(src, k, format!("unknown parameter `{word}`"), Some(help))
}
