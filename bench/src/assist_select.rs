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
//! features × L2 × epoch averaging) is scored by its pooled top-1
//! accuracy and macro-F1; the report lists them all, best first, and
//! marks the settings the server uses ([`Settings::default`]).

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
                for averaged in [false, true] {
                    let settings = Settings {
                        features: Features {
                            han_trigrams: han & 1 != 0,
                            han_skip_bigrams: han & 2 != 0,
                            latin_char_grams: latin,
                            word_bigrams: latin,
                        },
                        l2,
                        averaged,
                        ..Settings::FIRST
                    };
                    for balanced in [false, true] {
                        let settings = Settings {
                            balanced,
                            ..settings
                        };
                        if !out.contains(&settings) {
                            out.push(settings);
                        }
                    }
                }
            }
        }
    }
    out
}

/// Leave-one-out top-1 accuracy and macro-F1 of `settings` on `train`.
pub fn leave_one_out(settings: Settings, names: &[String], train: &[(usize, &str)]) -> (f64, f64) {
    let grams: Vec<_> = train.iter().map(|(_, t)| bigrams(t)).collect();
    let classes = names.len();
    let (mut tp, mut predicted, mut actual) = (
        vec![0usize; classes],
        vec![0usize; classes],
        vec![0usize; classes],
    );
    let mut correct = 0usize;
    for (held, (label, text)) in train.iter().enumerate() {
        let rest = train.iter().enumerate().filter(|(i, _)| {
            *i != held && !jaccard_near(&grams[*i], std::slice::from_ref(&grams[held]))
        });
        let model = Model::train_with(settings, names.to_vec(), rest.map(|(_, (l, t))| (*t, *l)));
        actual[*label] += 1;
        let Some(guess) = model.predict(text) else {
            continue;
        };
        let Some(guess) = names.iter().position(|n| *n == guess.intent) else {
            continue;
        };
        predicted[guess] += 1;
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
    (correct as f64 / train.len().max(1) as f64, f1)
}

/// Every candidate's cross-validated scores, best first (accuracy, then
/// macro-F1, then the simpler: fewer features, no averaging).
pub fn select(smoke: bool, names: &[String], train: &[(usize, &str)]) -> Value {
    let mut scored: Vec<(Settings, f64, f64)> = candidates(smoke)
        .into_iter()
        .map(|settings| {
            let (accuracy, f1) = leave_one_out(settings, names, train);
            (settings, accuracy, f1)
        })
        .collect();
    let complexity = |s: &Settings| {
        let f = s.features;
        u8::from(f.han_trigrams)
            + u8::from(f.han_skip_bigrams)
            + u8::from(f.latin_char_grams)
            + u8::from(s.averaged)
            + u8::from(s.balanced)
    };
    scored.sort_by(|a, b| {
        b.1.total_cmp(&a.1)
            .then(b.2.total_cmp(&a.2))
            .then(complexity(&a.0).cmp(&complexity(&b.0)))
    });
    let rows: Vec<Value> = scored
        .iter()
        .map(|(settings, accuracy, f1)| {
            json!({
                "settings": describe(settings),
                "cv_top1_accuracy": round(*accuracy),
                "cv_macro_f1": round(*f1),
                "is_first": *settings == Settings::FIRST,
                "is_default": *settings == Settings::default(),
            })
        })
        .collect();
    json!({
        "method": "leave-one-out on round 1 (near duplicates of the held-out line left out of its training)",
        "candidates": rows.len(),
        "ranked": rows,
    })
}
