//! The intent model: a linear softmax classifier over hashed character
//! 1–2-gram features, trained in-process on a shop's own examples.
//!
//! Features are [`super::normalize::features`] of the normalised text (Han
//! characters and pairs of neighbouring Han characters, Latin words),
//! hashed (FNV-1a) into [`DIMENSIONS`] buckets, each present feature
//! counted once, the vector L2-normalised. The model is one weight row per
//! intent plus a bias; a message's **confidence** for an intent is its
//! softmax probability. Training is plain stochastic gradient descent with
//! L2 regularisation over a fixed number of epochs in a fixed
//! (seeded) order, so the same examples always give the same model.
//!
//! Why this and not a word segmenter or a sentence encoder: issue 20's
//! prototype measured it as good as jieba words and a packaged
//! multilingual encoder on Chinese text classification, trained in 0.18 s
//! and classifying in microseconds, with nothing to download.
//!
//! **Enough examples.** A model is only *ready* (used by routing) when at
//! least [`MIN_INTENTS`] intents each have at least
//! [`MIN_EXAMPLES_PER_INTENT`] distinct examples; intents with fewer are
//! left out of the model (a rule naming one never matches). Why 8: see
//! docs/ASSIST.md ("Intents"): on the evaluation set, top-1 accuracy
//! climbs steeply up to 8 examples per intent and slowly after it, and
//! below 8 a single odd example moves an intent's weights more than the
//! rest together.

use std::collections::HashSet;

use super::normalize::{features, is_han, normalize};

/// Hashed feature buckets (2^14): a few hundred thousand distinct 1–2-grams
/// would collide, a shop's examples (thousands) barely do.
pub const DIMENSIONS: usize = 1 << 14;
/// Fewest intents a ready model has (one intent is not a choice).
pub const MIN_INTENTS: usize = 2;
/// Fewest distinct examples an intent needs to be in the model.
pub const MIN_EXAMPLES_PER_INTENT: usize = 8;
/// Version byte of [`Model::to_bytes`]: 1 had no feature flags (plain
/// character 1–2-grams and words); 2 stores them.
const FORMAT: u8 = 2;
const FORMAT_V1: u8 = 1;

/// Which features a model sees, beyond the character 1–2-grams and words
/// of [`super::normalize::features`]. Stored in the model: a message is
/// read with the features its model was trained on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Features {
    /// Three neighbouring Han characters (`退款了`).
    pub han_trigrams: bool,
    /// Two Han characters one apart (`退_款` in `退了款`, `退货款`): a
    /// word split by a particle or a measure word still meets itself.
    pub han_skip_bigrams: bool,
    /// Character 3-grams inside Latin words, with the word's edges
    /// (`<re`, `ref`, …, `nd>`): `refund`, `refunds` and `refunded`
    /// share most of them.
    pub latin_char_grams: bool,
    /// Two neighbouring Latin words (`my order`).
    pub word_bigrams: bool,
}

impl Features {
    fn to_byte(self) -> u8 {
        u8::from(self.han_trigrams)
            | u8::from(self.han_skip_bigrams) << 1
            | u8::from(self.latin_char_grams) << 2
            | u8::from(self.word_bigrams) << 3
    }

    fn from_byte(byte: u8) -> Option<Features> {
        (byte < 16).then_some(Features {
            han_trigrams: byte & 1 != 0,
            han_skip_bigrams: byte & 2 != 0,
            latin_char_grams: byte & 4 != 0,
            word_bigrams: byte & 8 != 0,
        })
    }
}

/// How a model is trained. [`Settings::default`] is what Kefu uses; the
/// evaluation (`kefu-bench assist`) compares others by cross-validation on
/// the training examples only.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Settings {
    pub features: Features,
    /// Passes over the examples.
    pub epochs: usize,
    /// The first pass's step; pass `e` takes `rate / (1 + 0.1 e)`.
    pub learning_rate: f32,
    /// L2 regularisation (weight decay on the weights a step touches).
    pub l2: f32,
    /// Weigh each example by `n / (intents × n_intent)`, so an intent with
    /// many history examples does not drown one with the admin's few.
    pub balanced: bool,
    /// Use the mean of the weights after each pass from the middle pass
    /// on (epoch averaging): steadier than the last pass's weights on a
    /// few dozen examples.
    pub averaged: bool,
}

impl Settings {
    /// The model of issue 20's first version (character 1–2-grams and
    /// words, 30 passes, last weights): the evaluation's "before".
    pub const FIRST: Settings = Settings {
        features: Features {
            han_trigrams: false,
            han_skip_bigrams: false,
            latin_char_grams: false,
            word_bigrams: false,
        },
        epochs: 30,
        learning_rate: 0.5,
        l2: 1e-5,
        balanced: false,
        averaged: false,
    };
}

impl Default for Settings {
    /// Chosen by leave-one-out cross-validation on the evaluation set's
    /// training examples (its round 1; never its test round), among
    /// every combination of the extra features, three L2 strengths, 30,
    /// 60 or 120 passes and epoch averaging, ranked as `kefu-bench
    /// assist` ranks them (docs/ASSIST.md, "Evaluation of intents"):
    /// within one example of the best accuracy, the one that routes most
    /// examples right at the routing threshold with precision ≥ 0.95 —
    /// Latin character 3-grams and word bigrams, 60 passes, averaged. The
    /// class weights are not from that set (it is balanced, where they
    /// change nothing): history makes an app's intents unequal.
    fn default() -> Settings {
        Settings {
            features: Features {
                han_trigrams: false,
                han_skip_bigrams: false,
                latin_char_grams: true,
                word_bigrams: true,
            },
            epochs: 60,
            averaged: true,
            balanced: true,
            ..Settings::FIRST
        }
    }
}

/// One labelled example: the text and the index of its intent.
#[derive(Debug, Clone)]
pub struct Example {
    pub text: String,
    pub label: usize,
}

/// A trained model: intent names, the features it reads, its weights.
#[derive(Debug, Clone, PartialEq)]
pub struct Model {
    pub intents: Vec<String>,
    features: Features,
    /// `intents.len()` rows of [`DIMENSIONS`] weights.
    weights: Vec<f32>,
    bias: Vec<f32>,
}

/// A prediction: the best intent and its confidence (0–1).
#[derive(Debug, Clone, PartialEq)]
pub struct Prediction {
    pub intent: String,
    pub confidence: f32,
}

/// The sparse feature vector of a text with the first model's features
/// (character 1–2-grams and words): bucket indexes, each weighing
/// `1/sqrt(n)` (binary presence, L2-normalised).
pub fn vectorize(text: &str) -> (Vec<u32>, f32) {
    vectorize_with(text, Features::default())
}

/// [`vectorize`] with `extra` features too. Each kind of feature is
/// hashed with its own prefix, so a Han trigram never shares a bucket
/// with a Latin word by construction (only by collision).
pub fn vectorize_with(text: &str, extra: Features) -> (Vec<u32>, f32) {
    let normalized = normalize(text);
    let mut buckets: Vec<u32> = features(&normalized)
        .iter()
        .map(|feature| bucket(b"", feature))
        .collect();
    if extra != Features::default() {
        extra_features(&normalized, extra, &mut buckets);
    }
    buckets.sort_unstable();
    buckets.dedup();
    let weight = if buckets.is_empty() {
        0.0
    } else {
        1.0 / (buckets.len() as f32).sqrt()
    };
    (buckets, weight)
}

/// The features beyond [`features`], as buckets.
fn extra_features(normalized: &str, extra: Features, out: &mut Vec<u32>) {
    let mut han: Vec<char> = Vec::new();
    let mut word = String::new();
    let mut words: Vec<String> = Vec::new();
    let flush_han = |han: &mut Vec<char>, out: &mut Vec<u32>| {
        let mut text = String::with_capacity(12);
        if extra.han_trigrams {
            for w in han.windows(3) {
                text.clear();
                text.extend(w);
                out.push(bucket(b"3", &text));
            }
        }
        if extra.han_skip_bigrams {
            for w in han.windows(3) {
                text.clear();
                text.push(w[0]);
                text.push(w[2]);
                out.push(bucket(b"s", &text));
            }
        }
        han.clear();
    };
    for c in normalized.chars() {
        if is_han(c) {
            if !word.is_empty() {
                words.push(std::mem::take(&mut word));
            }
            han.push(c);
        } else {
            flush_han(&mut han, out);
            if c.is_alphanumeric() {
                word.push(c);
            } else if !word.is_empty() {
                words.push(std::mem::take(&mut word));
            }
        }
    }
    flush_han(&mut han, out);
    if !word.is_empty() {
        words.push(word);
    }
    if extra.latin_char_grams {
        let mut gram = String::with_capacity(12);
        for word in &words {
            let chars: Vec<char> = std::iter::once('<')
                .chain(word.chars())
                .chain(std::iter::once('>'))
                .collect();
            // A word of one or two letters is already a feature whole.
            if chars.len() < 5 {
                continue;
            }
            for w in chars.windows(3) {
                gram.clear();
                gram.extend(w);
                out.push(bucket(b"c", &gram));
            }
        }
    }
    if extra.word_bigrams {
        for pair in words.windows(2) {
            out.push(bucket(b"w", &format!("{} {}", pair[0], pair[1])));
        }
    }
}

fn bucket(prefix: &[u8], feature: &str) -> u32 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in prefix.iter().chain(feature.as_bytes()) {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    (hash as usize % DIMENSIONS) as u32
}

fn softmax(scores: &mut [f32]) {
    let max = scores.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0.0;
    for score in scores.iter_mut() {
        *score = (*score - max).exp();
        sum += *score;
    }
    if sum > 0.0 {
        for score in scores.iter_mut() {
            *score /= sum;
        }
    }
}

/// Deterministic shuffling (xorshift64*), so training is reproducible.
struct Shuffle(u64);

impl Shuffle {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = (self.next() % (i as u64 + 1)) as usize;
            items.swap(i, j);
        }
    }
}

/// How many distinct (normalised) examples each intent has.
pub fn distinct_counts(intents: usize, examples: &[Example]) -> Vec<usize> {
    let mut seen = HashSet::new();
    let mut counts = vec![0; intents];
    for example in examples {
        if example.label < intents && seen.insert((example.label, normalize(&example.text))) {
            counts[example.label] += 1;
        }
    }
    counts
}

impl Model {
    /// Trains on `examples` (labels index `intents`); intents with fewer
    /// than [`MIN_EXAMPLES_PER_INTENT`] distinct examples are left out.
    /// `None` when fewer than [`MIN_INTENTS`] remain: not enough to use.
    pub fn train(intents: &[String], examples: &[Example]) -> Option<Model> {
        let counts = distinct_counts(intents.len(), examples);
        let kept: Vec<usize> = (0..intents.len())
            .filter(|&i| counts[i] >= MIN_EXAMPLES_PER_INTENT)
            .collect();
        if kept.len() < MIN_INTENTS {
            return None;
        }
        Some(Self::train_with(
            Settings::default(),
            kept.iter().map(|&i| intents[i].clone()).collect(),
            examples.iter().filter_map(|example| {
                let label = kept.iter().position(|&k| k == example.label)?;
                Some((example.text.as_str(), label))
            }),
        ))
    }

    /// Trains on every example whatever the counts, with the default
    /// settings (the evaluation's learning curve uses it directly).
    pub fn train_all<'a>(
        intents: Vec<String>,
        examples: impl Iterator<Item = (&'a str, usize)>,
    ) -> Model {
        Self::train_with(Settings::default(), intents, examples)
    }

    /// Trains on every example with `settings`.
    pub fn train_with<'a>(
        settings: Settings,
        intents: Vec<String>,
        examples: impl Iterator<Item = (&'a str, usize)>,
    ) -> Model {
        let classes = intents.len();
        let mut seen = HashSet::new();
        let mut data: Vec<(Vec<u32>, f32, usize)> = examples
            .filter(|(_, label)| *label < classes)
            .filter_map(|(text, label)| {
                let (buckets, weight) = vectorize_with(text, settings.features);
                (!buckets.is_empty() && seen.insert((buckets.clone(), label)))
                    .then_some((buckets, weight, label))
            })
            .collect();
        let mut per_class = vec![0usize; classes];
        for (_, _, label) in &data {
            per_class[*label] += 1;
        }
        let class_weight: Vec<f32> = per_class
            .iter()
            .map(|&n| {
                if settings.balanced && n > 0 {
                    data.len() as f32 / (classes as f32 * n as f32)
                } else {
                    1.0
                }
            })
            .collect();
        let mut model = Model {
            intents,
            features: settings.features,
            weights: vec![0.0; classes * DIMENSIONS],
            bias: vec![0.0; classes],
        };
        let mut sum: Option<(Vec<f32>, Vec<f32>, f32)> = None;
        let mut order = Shuffle(0x9e37_79b9_7f4a_7c15);
        let mut probabilities = vec![0.0f32; classes];
        for epoch in 0..settings.epochs {
            order.shuffle(&mut data);
            let rate = settings.learning_rate / (1.0 + epoch as f32 * 0.1);
            for (buckets, weight, label) in &data {
                model.scores_into(buckets, *weight, &mut probabilities);
                softmax(&mut probabilities);
                let importance = class_weight[*label];
                for (class, probability) in probabilities.iter().enumerate() {
                    let target = if class == *label { 1.0 } else { 0.0 };
                    let gradient = (probability - target) * importance;
                    let row = &mut model.weights[class * DIMENSIONS..(class + 1) * DIMENSIONS];
                    for &b in buckets {
                        let w = &mut row[b as usize];
                        *w -= rate * (gradient * weight + settings.l2 * *w);
                    }
                    model.bias[class] -= rate * gradient;
                }
            }
            if settings.averaged && epoch >= settings.epochs / 2 {
                let (weights, bias, count) = sum.get_or_insert_with(|| {
                    (vec![0.0; model.weights.len()], vec![0.0; classes], 0.0)
                });
                for (s, w) in weights.iter_mut().zip(&model.weights) {
                    *s += *w;
                }
                for (s, b) in bias.iter_mut().zip(&model.bias) {
                    *s += *b;
                }
                *count += 1.0;
            }
        }
        if let Some((weights, bias, count)) = sum {
            model.weights = weights.into_iter().map(|w| w / count).collect();
            model.bias = bias.into_iter().map(|b| b / count).collect();
        }
        model
    }

    fn scores_into(&self, buckets: &[u32], weight: f32, out: &mut [f32]) {
        for (class, score) in out.iter_mut().enumerate() {
            let row = &self.weights[class * DIMENSIONS..(class + 1) * DIMENSIONS];
            *score =
                self.bias[class] + buckets.iter().map(|&b| row[b as usize]).sum::<f32>() * weight;
        }
    }

    /// Every intent's confidence, in `intents` order.
    pub fn probabilities(&self, text: &str) -> Vec<f32> {
        let (buckets, weight) = vectorize_with(text, self.features);
        let mut scores = vec![0.0; self.intents.len()];
        self.scores_into(&buckets, weight, &mut scores);
        softmax(&mut scores);
        scores
    }

    /// The most likely intent, or `None` for a text with no feature (only
    /// punctuation or emoji).
    pub fn predict(&self, text: &str) -> Option<Prediction> {
        let (buckets, weight) = vectorize_with(text, self.features);
        if buckets.is_empty() {
            return None;
        }
        let mut probabilities = vec![0.0; self.intents.len()];
        self.scores_into(&buckets, weight, &mut probabilities);
        softmax(&mut probabilities);
        let (best, confidence) = probabilities
            .iter()
            .copied()
            .enumerate()
            .max_by(|a, b| a.1.total_cmp(&b.1))?;
        Some(Prediction {
            intent: self.intents[best].clone(),
            confidence,
        })
    }

    /// Stored form: format byte (2), feature flags (one byte), intent
    /// count (u32 LE), each name (u32 LE length + UTF-8), then biases and
    /// weights as f32 LE. Format 1 (no flags byte) is still read, as a
    /// model of character 1–2-grams and words.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(8 + (self.weights.len() + self.bias.len()) * 4);
        out.push(FORMAT);
        out.push(self.features.to_byte());
        out.extend_from_slice(&(self.intents.len() as u32).to_le_bytes());
        for name in &self.intents {
            out.extend_from_slice(&(name.len() as u32).to_le_bytes());
            out.extend_from_slice(name.as_bytes());
        }
        for value in self.bias.iter().chain(&self.weights) {
            out.extend_from_slice(&value.to_le_bytes());
        }
        out
    }

    /// Whether a stored blob is of an older format than [`Model::to_bytes`]
    /// writes (the trainer then trains the app again at start-up).
    pub fn is_outdated(bytes: &[u8]) -> bool {
        bytes.first().is_some_and(|&format| format != FORMAT)
    }

    /// Reads [`Model::to_bytes`]; `None` for anything else (an unknown
    /// format version, a cut blob): the trainer then trains again.
    pub fn from_bytes(bytes: &[u8]) -> Option<Model> {
        let (&format, mut rest) = bytes.split_first()?;
        let features = match format {
            FORMAT => {
                let (&flags, tail) = rest.split_first()?;
                rest = tail;
                Features::from_byte(flags)?
            }
            FORMAT_V1 => Features::default(),
            _ => return None,
        };
        let mut take = |n: usize| -> Option<&[u8]> {
            if rest.len() < n {
                return None;
            }
            let (head, tail) = rest.split_at(n);
            rest = tail;
            Some(head)
        };
        let read_u32 = |b: &[u8]| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize;
        let classes = read_u32(take(4)?);
        if classes > 10_000 {
            return None;
        }
        let mut intents = Vec::with_capacity(classes);
        for _ in 0..classes {
            let len = read_u32(take(4)?);
            intents.push(String::from_utf8(take(len)?.to_vec()).ok()?);
        }
        let floats = take(classes * (DIMENSIONS + 1) * 4)?;
        if !rest.is_empty() {
            return None;
        }
        let values: Vec<f32> = floats
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        let (bias, weights) = values.split_at(classes);
        Some(Model {
            intents,
            features,
            weights: weights.to_vec(),
            bias: bias.to_vec(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn examples() -> (Vec<String>, Vec<Example>) {
        let intents = vec!["refund".to_owned(), "shipping".to_owned()];
        let refund = [
            "我要退款",
            "怎么退款",
            "退款什么时候到账",
            "申请退款",
            "钱退给我",
            "refund please",
            "退款进度",
            "不想要了退钱",
            "退款失败了",
        ];
        let shipping = [
            "什么时候发货",
            "快递到哪了",
            "物流信息",
            "怎么还没发货",
            "查一下快递",
            "where is my parcel",
            "发什么快递",
            "物流好慢",
            "几天能到",
        ];
        let mut examples = Vec::new();
        for text in refund {
            examples.push(Example {
                text: text.into(),
                label: 0,
            });
        }
        for text in shipping {
            examples.push(Example {
                text: text.into(),
                label: 1,
            });
        }
        (intents, examples)
    }

    #[test]
    fn learns_and_predicts() {
        let (intents, examples) = examples();
        let model = Model::train(&intents, &examples).expect("enough examples");
        let refund = model.predict("退款到账了吗").expect("a prediction");
        assert_eq!(refund.intent, "refund");
        assert!(refund.confidence > 0.5, "{refund:?}");
        assert_eq!(
            model
                .predict("我的快遞到哪裡了")
                .expect("a prediction")
                .intent,
            "shipping"
        );
        assert!(model.predict("!!!").is_none());
        let sum: f32 = model.probabilities("hello").iter().sum();
        assert!((sum - 1.0).abs() < 1e-4);
    }

    #[test]
    fn too_few_examples_make_no_model() {
        let (intents, mut examples) = examples();
        // Shipping keeps 7 distinct examples (and two copies of one).
        examples.retain(|e| e.label == 0 || !e.text.contains("几天"));
        examples.retain(|e| e.label == 0 || !e.text.contains("物流好慢"));
        examples.push(Example {
            text: "查一下快递".into(),
            label: 1,
        });
        examples.push(Example {
            text: "查一下快遞".into(),
            label: 1,
        });
        assert!(Model::train(&intents, &examples).is_none());
    }

    #[test]
    fn training_is_reproducible_and_round_trips() {
        let (intents, examples) = examples();
        let a = Model::train(&intents, &examples).expect("a model");
        let b = Model::train(&intents, &examples).expect("a model");
        assert_eq!(a, b);
        let bytes = a.to_bytes();
        assert_eq!(Model::from_bytes(&bytes), Some(a));
        assert!(Model::from_bytes(&bytes[..bytes.len() - 1]).is_none());
        assert!(Model::from_bytes(&[2]).is_none());
        assert!(Model::from_bytes(&[3]).is_none());
        assert!(Model::from_bytes(&[]).is_none());
        assert!(!Model::is_outdated(&bytes));
    }

    #[test]
    fn a_first_format_model_is_still_read_with_its_own_features() {
        let (intents, examples) = examples();
        let first = Model::train_with(
            Settings::FIRST,
            intents.clone(),
            examples.iter().map(|e| (e.text.as_str(), e.label)),
        );
        // Format 1: no feature byte.
        let mut v1 = first.to_bytes();
        v1.remove(1);
        v1[0] = 1;
        assert!(Model::is_outdated(&v1));
        let read = Model::from_bytes(&v1).expect("a format-1 model");
        assert_eq!(read, first);
        assert_eq!(
            read.predict("退款到账了吗"),
            first.predict("退款到账了吗"),
            "the same features as when it was trained"
        );
        // Unknown feature flags are refused.
        let mut bad = Model::train(&intents, &examples)
            .expect("a model")
            .to_bytes();
        bad[1] = 0xff;
        assert!(Model::from_bytes(&bad).is_none());
    }

    #[test]
    fn extra_features_see_trigrams_and_latin_word_parts() {
        let plain = vectorize("refunded 退了款").0.len();
        let all = Features {
            han_trigrams: true,
            han_skip_bigrams: true,
            latin_char_grams: true,
            word_bigrams: true,
        };
        // + 退了款 (trigram), 退_款 (skip), 8 char 3-grams of <refunded>.
        assert_eq!(
            vectorize_with("refunded 退了款", all).0.len(),
            plain + 1 + 1 + 8
        );
        // Word bigrams join neighbouring Latin words only.
        let two = Features {
            word_bigrams: true,
            ..Features::default()
        };
        assert_eq!(vectorize_with("my order", two).0.len(), 3);
        // Latin 3-grams make a plural meet its singular.
        let grams = Features {
            latin_char_grams: true,
            ..Features::default()
        };
        let (a, _) = vectorize_with("refund", grams);
        let (b, _) = vectorize_with("refunds", grams);
        assert!(a.iter().filter(|x| b.contains(x)).count() >= 4);
        assert_eq!(Features::from_byte(all.to_byte()), Some(all));
    }

    #[test]
    fn balanced_weights_keep_a_small_intent_alive() {
        let (intents, mut examples) = examples();
        // Shipping gets 5 times as many (distinct) examples as refund.
        for n in 0..40 {
            examples.push(Example {
                text: format!("快递 {n} 号到哪了"),
                label: 1,
            });
        }
        let model = Model::train(&intents, &examples).expect("a model");
        assert_eq!(
            model.predict("退款").expect("a prediction").intent,
            "refund"
        );
    }
}
