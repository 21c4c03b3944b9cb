//! Choosing the intent model's settings honestly: by cross-validation on
//! the training examples (round 1 of `intents.tsv`) only, never on the
//! held-out round 2 (docs/ASSIST.md, "Evaluation of intents").
//!
//! Leave-one-out over round 1: each example is held out in turn and a
//! model trained on the rest predicts it; the examples that are near
//! duplicates of the held-out one (the same character-bigram Jaccard ≥
//! [`super::assist::NEAR_DUPLICATE`] that splits the test set) are left
//! out of that training too, so an admin's two spellings of one sentence
//! do not grade each other. Every candidate of a small grid (extra
//! features × L2 × passes × epoch averaging) is scored by its pooled
//! top-1 accuracy and macro-F1, and at the routing threshold by its
//! precision and the share of examples routed right; the report lists
//! them all, ranked as [`select`] says, and marks the settings the
//! server uses ([`Settings::default`]).

use kefu_server::assist::intent::{Features, Model, Settings};
use serde_json::{Value, json};

use crate::assist::{bigrams, jaccard_near, round};

/// A candidate's name, for the report.
pub fn describe(settings: &Settings) -> String {
    let f = settings.features;
    let mut parts = vec!["han 1-2-grams + words".to_owned()];
    if f.han_trigrams {
        parts.push("han 3-grams".into());
    }
    if f.han_skip_bigrams {
        parts.push("han skip-bigrams".into());
    }
    if f.latin_char_grams {
        parts.push("latin char 3-grams".into());
    }
    if f.word_bigrams {
        parts.push("word bigrams".into());
    }
    parts.push(format!("l2 {:e}", settings.l2));
    parts.push(format!("{} epochs", settings.epochs));
    if settings.averaged {
        parts.push("averaged".into());
    }
    if settings.balanced {
        parts.push("balanced".into());
    }
    parts.join(", ")
}

/// The grid: [`Settings::FIRST`], the default, and the combinations of
/// the extra features, L2 and averaging (`smoke`: the first two only).
pub fn candidates(smoke: bool) -> Vec<Settings> {
    let mut out = vec![Settings::FIRST];
    if Settings::default() != Settings::FIRST {
        out.push(Settings::default());
    }
    if smoke {
        return out;
    }
    for han in 0..4u8 {
        for latin in [false, true] {
            for l2 in [1e-5f32, 1e-4, 1e-3] {
                for (epochs, averaged) in [30, 60, 120]
                    .into_iter()
                    .flat_map(|e| [(e, false), (e, true)])
                {
                    let settings = Settings {
                        features: Features {
                            han_trigrams: han & 1 != 0,
                            han_skip_bigrams: han & 2 != 0,
                            latin_char_grams: latin,
                            word_bigrams: latin,
                        },
                        l2,
                        epochs,
                        averaged,
                        ..Settings::FIRST
                    };
                    if !out.contains(&settings) {
                        out.push(settings);
                    }
                }
            }
        }
    }
    out
}

/// Leave-one-out top-1 accuracy and macro-F1 of `settings` on `train`.
pub fn leave_one_out(settings: Settings, names: &[String], train: &[(usize, &str)]) -> Cv {
    let grams: Vec<_> = train.iter().map(|(_, t)| bigrams(t)).collect();
    let classes = names.len();
    let (mut tp, mut predicted, mut actual) = (
        vec![0usize; classes],
        vec![0usize; classes],
        vec![0usize; classes],
    );
    let (mut correct, mut routed, mut routed_right) = (0usize, 0usize, 0usize);
    for (held, (label, text)) in train.iter().enumerate() {
        let rest = train.iter().enumerate().filter(|(i, _)| {
            *i != held && !jaccard_near(&grams[*i], std::slice::from_ref(&grams[held]))
        });
        let model = Model::train_with(settings, names.to_vec(), rest.map(|(_, (l, t))| (*t, *l)));
        actual[*label] += 1;
        let Some(prediction) = model.predict(text) else {
            continue;
        };
        let Some(guess) = names.iter().position(|n| *n == prediction.intent) else {
            continue;
        };
        predicted[guess] += 1;
        if prediction.confidence >= ROUTING_THRESHOLD {
            routed += 1;
            routed_right += usize::from(guess == *label);
        }
        if guess == *label {
            correct += 1;
            tp[guess] += 1;
        }
    }
    let f1 = (0..classes)
        .map(|c| {
            let p = tp[c] as f64 / predicted[c].max(1) as f64;
            let r = tp[c] as f64 / actual[c].max(1) as f64;
            if p + r == 0.0 {
                0.0
            } else {
                2.0 * p * r / (p + r)
            }
        })
        .sum::<f64>()
        / classes.max(1) as f64;
    let n = train.len().max(1) as f64;
    Cv {
        accuracy: correct as f64 / n,
        macro_f1: f1,
        coverage: routed_right as f64 / n,
        precision: if routed == 0 {
            1.0
        } else {
            routed_right as f64 / routed as f64
        },
    }
}

/// Cross-validated scores: top-1 accuracy, macro-F1, and at the routing
/// threshold the share of examples routed right and the precision.
#[derive(Debug, Clone, Copy)]
pub struct Cv {
    pub accuracy: f64,
    pub macro_f1: f64,
    pub coverage: f64,
    pub precision: f64,
}

/// A rule's default `intent_confidence`.
const ROUTING_THRESHOLD: f32 = kefu_server::routing::rules::DEFAULT_INTENT_CONFIDENCE as f32;

/// Every candidate's cross-validated scores, ranked: the candidates
/// within one example of the best accuracy are "as accurate"; among them
/// routing decides — first those whose precision at the routing threshold
/// is ≥ [`PRECISION_TARGET`], by the share routed right (a model that is
/// as accurate but less sure routes fewer chats), then the simpler (fewer
/// features, fewer passes).
pub fn select(smoke: bool, names: &[String], train: &[(usize, &str)]) -> Value {
    let scored: Vec<(Settings, Cv)> = candidates(smoke)
        .into_iter()
        .map(|settings| (settings, leave_one_out(settings, names, train)))
        .collect();
    let best = scored.iter().map(|(_, cv)| cv.accuracy).fold(0.0, f64::max);
    let tie = 1.0 / train.len().max(1) as f64 + 1e-9;
    let complexity = |s: &Settings| {
        let f = s.features;
        (
            u8::from(f.han_trigrams)
                + u8::from(f.han_skip_bigrams)
                + u8::from(f.latin_char_grams)
                + u8::from(s.averaged),
            s.epochs,
        )
    };
    let mut ranked = scored;
    ranked.sort_by(|(a, x), (b, y)| {
        let near = |cv: &Cv| best - cv.accuracy <= tie;
        let precise = |cv: &Cv| cv.precision >= PRECISION_TARGET;
        near(y)
            .cmp(&near(x))
            .then(if near(x) && near(y) {
                precise(y)
                    .cmp(&precise(x))
                    .then(y.coverage.total_cmp(&x.coverage))
            } else {
                y.accuracy.total_cmp(&x.accuracy)
            })
            .then(y.macro_f1.total_cmp(&x.macro_f1))
            .then(complexity(a).cmp(&complexity(b)))
    });
    let rows: Vec<Value> = ranked
        .iter()
        .map(|(settings, cv)| {
            json!({
                "settings": describe(settings),
                "cv_top1_accuracy": round(cv.accuracy),
                "cv_macro_f1": round(cv.macro_f1),
                "cv_coverage_at_routing_threshold": round(cv.coverage),
                "cv_precision_at_routing_threshold": round(cv.precision),
                "is_first": *settings == Settings::FIRST,
                "is_default": *settings == Settings::default(),
            })
        })
        .collect();
    json!({
        "method": "leave-one-out on round 1 (near duplicates of the held-out line left out of its training); ranked: within one example of the best accuracy, by precision >= 0.95 then coverage at the routing threshold",
        "candidates": rows.len(),
        "ranked": rows,
    })
}

/// The routing precision the selection asks for.
const PRECISION_TARGET: f64 = 0.95;
