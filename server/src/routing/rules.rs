//! Routing rules ("intelligent routing"): ordered conditions on the app,
//! the first message's words and the visitor's attributes that send a new
//! chat to a team or an agent. Admin CRUD under `/api/v1/routing/rules`.
//!
//! A rule matches when every condition it has matches: `app_id` equal;
//! any one of `keywords` a case-insensitive substring of the first message
//! (plain substring, so Chinese such as `退款` needs no segmenter); every
//! key of `attributes` equal (as JSON) to the visitor's attribute; when
//! `intent` is set, the chat's predicted intent (Kefu Assist,
//! assist/insight.rs) is that intent with a confidence of at least
//! `intent_confidence` (a chat with no prediction, because its app has no
//! ready model, never matches such a rule). A rule
//! with no condition matches everything. The first enabled match, by
//! `position`, decides; no match: the conversation goes to everyone.
//!
//! The doors (`/api/v1/routing/rules…`) are in `routing/routes.rs`.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use sqlx::{SqliteConnection, SqliteExecutor};

use crate::assist::insight::IntentGuess;
use crate::change::Change;
use crate::error::ApiError;
use crate::ids::{AgentId, AppId, RuleId, TeamId};
use crate::state::AppState;
use crate::time::now_ms;

/// Limits: rules in all, keywords per rule, characters per keyword,
/// attribute conditions per rule.
pub const RULES_MAX: i64 = 200;
const KEYWORDS_MAX: usize = 50;
const KEYWORD_CHARS: usize = 100;
const ATTRIBUTES_MAX: usize = 20;
/// `intent_confidence` when a rule names an intent without one.
pub const DEFAULT_INTENT_CONFIDENCE: f64 = 0.6;

/// Where a matching rule sends the chat.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Team(TeamId),
    Agent(AgentId),
}

/// The `Rule` object.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct Rule {
    pub id: RuleId,
    pub name: String,
    /// 1-based evaluation order.
    pub position: i64,
    pub enabled: bool,
    pub app_id: Option<AppId>,
    #[sqlx(json)]
    pub keywords: Vec<String>,
    #[sqlx(json)]
    pub attributes: Map<String, Value>,
    pub team_id: Option<TeamId>,
    pub agent_id: Option<AgentId>,
    pub created_at: i64,
    /// [ext] The predicted intent the chat must have (Kefu Assist).
    pub intent: Option<String>,
    /// [ext] …with at least this confidence (0–1).
    pub intent_confidence: Option<f64>,
}

impl Rule {
    fn matches(
        &self,
        app: AppId,
        message: &str,
        attributes: &Value,
        intent: Option<&IntentGuess>,
    ) -> bool {
        if self.app_id.is_some_and(|wanted| wanted != app) {
            return false;
        }
        if let Some(wanted) = &self.intent {
            let at_least = self.intent_confidence.unwrap_or(DEFAULT_INTENT_CONFIDENCE);
            if !intent
                .is_some_and(|guess| guess.name == *wanted && guess.confidence >= at_least as f32)
            {
                return false;
            }
        }
        if !self.keywords.is_empty() {
            let message = message.to_lowercase();
            if !self
                .keywords
                .iter()
                .any(|keyword| message.contains(&keyword.to_lowercase()))
            {
                return false;
            }
        }
        self.attributes
            .iter()
            .all(|(key, value)| attributes.get(key) == Some(value))
    }

    fn target(&self) -> Option<Target> {
        match (self.team_id, self.agent_id) {
            (Some(team), _) => Some(Target::Team(team)),
            (None, Some(agent)) => Some(Target::Agent(agent)),
            (None, None) => None,
        }
    }
}

const COLUMNS: &str =
    "id, name, position, enabled, app_id, keywords, attributes, team_id, agent_id, created_at,
    intent, intent_confidence";

/// Every rule (at most [`RULES_MAX`]) in evaluation order.
pub async fn all<'e>(db: impl SqliteExecutor<'e>) -> Result<Vec<Rule>, ApiError> {
    Ok(sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM routing_rules ORDER BY position, id LIMIT {RULES_MAX}"
    ))
    .fetch_all(db)
    .await?)
}

/// The enabled rules in evaluation order: read once for a burst of new
/// chats, then [`pick`] for each.
pub async fn enabled<'e>(db: impl SqliteExecutor<'e>) -> Result<Vec<Rule>, ApiError> {
    let mut rules = all(db).await?;
    rules.retain(|rule| rule.enabled);
    Ok(rules)
}

/// The target of the first of `rules` that matches, if any.
pub fn pick(
    rules: &[Rule],
    app: AppId,
    first_message: &str,
    attributes: &Value,
    intent: Option<&IntentGuess>,
) -> Option<Target> {
    rules
        .iter()
        .find(|rule| rule.matches(app, first_message, attributes, intent))
        .and_then(Rule::target)
}

/// A new rule, or a change of one: create and update share it; on update
/// every field is optional and `null` clears `app_id`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleInput {
    pub name: Option<String>,
    pub enabled: Option<bool>,
    #[serde(default, deserialize_with = "crate::http::extract::explicit_null")]
    pub app_id: Option<Option<AppId>>,
    pub keywords: Option<Vec<String>>,
    pub attributes: Option<Map<String, Value>>,
    #[serde(default, deserialize_with = "crate::http::extract::explicit_null")]
    pub team_id: Option<Option<TeamId>>,
    #[serde(default, deserialize_with = "crate::http::extract::explicit_null")]
    pub agent_id: Option<Option<AgentId>>,
    /// `null` removes the intent condition.
    #[serde(default, deserialize_with = "crate::http::extract::explicit_null")]
    pub intent: Option<Option<String>>,
    pub intent_confidence: Option<f64>,
}

/// The fields of a rule, validated, before it is stored.
struct Fields {
    name: String,
    enabled: bool,
    app_id: Option<AppId>,
    keywords: Vec<String>,
    attributes: Map<String, Value>,
    target: Target,
    intent: Option<(String, f64)>,
}

impl Fields {
    fn of(rule: &Rule) -> Option<Fields> {
        Some(Fields {
            name: rule.name.clone(),
            enabled: rule.enabled,
            app_id: rule.app_id,
            keywords: rule.keywords.clone(),
            attributes: rule.attributes.clone(),
            target: rule.target()?,
            intent: rule.intent.clone().map(|name| {
                (
                    name,
                    rule.intent_confidence.unwrap_or(DEFAULT_INTENT_CONFIDENCE),
                )
            }),
        })
    }

    /// Lays `body` over `self` and checks the result, reading what it
    /// refers to through `conn`: the caller's write transaction, so that
    /// the app, team or agent cannot go away before the rule is written
    /// (and no second pool connection is needed while it holds the lock).
    async fn apply(
        mut self,
        conn: &mut SqliteConnection,
        body: RuleInput,
    ) -> Result<Fields, ApiError> {
        if let Some(name) = body.name {
            self.name = name.trim().to_owned();
        }
        if self.name.is_empty() || self.name.chars().count() > 100 {
            return Err(ApiError::bad_request("name must be 1-100 characters").in_field("name"));
        }
        if let Some(enabled) = body.enabled {
            self.enabled = enabled;
        }
        if let Some(app_id) = body.app_id {
            self.app_id = app_id;
        }
        if let Some(app) = self.app_id {
            let found: Option<(i64,)> = sqlx::query_as("SELECT 1 FROM apps WHERE id = ?")
                .bind(app)
                .fetch_optional(&mut *conn)
                .await?;
            if found.is_none() {
                return Err(ApiError::not_found("app"));
            }
        }
        if let Some(keywords) = body.keywords {
            if keywords.len() > KEYWORDS_MAX {
                return Err(
                    ApiError::bad_request(format!("at most {KEYWORDS_MAX} keywords"))
                        .in_field("keywords"),
                );
            }
            let mut clean = Vec::with_capacity(keywords.len());
            for keyword in keywords {
                let keyword = keyword.trim().to_owned();
                if keyword.is_empty() || keyword.chars().count() > KEYWORD_CHARS {
                    return Err(ApiError::bad_request(format!(
                        "each keyword must be 1-{KEYWORD_CHARS} characters"
                    ))
                    .in_field("keywords"));
                }
                clean.push(keyword);
            }
            self.keywords = clean;
        }
        if let Some(attributes) = body.attributes {
            if attributes.len() > ATTRIBUTES_MAX {
                return Err(ApiError::bad_request(format!(
                    "at most {ATTRIBUTES_MAX} attribute conditions"
                ))
                .in_field("attributes"));
            }
            if attributes
                .keys()
                .any(|key| key.is_empty() || key.len() > 100)
            {
                return Err(ApiError::bad_request("attribute keys must be 1-100 bytes")
                    .in_field("attributes"));
            }
            if attributes.values().any(|v| v.is_object() || v.is_array()) {
                return Err(ApiError::bad_request(
                    "attribute values must be strings, numbers, booleans or null",
                )
                .in_field("attributes"));
            }
            self.attributes = attributes;
        }
        if let Some(confidence) = body.intent_confidence
            && !(0.0..=1.0).contains(&confidence)
        {
            return Err(
                ApiError::bad_request("intent_confidence must be between 0 and 1")
                    .in_field("intent_confidence"),
            );
        }
        match (body.intent, body.intent_confidence) {
            (Some(None), _) => self.intent = None,
            (Some(Some(name)), confidence) => {
                let name = name.trim().to_owned();
                let known: Option<i64> = sqlx::query_scalar(
                    "SELECT 1 FROM assist_intents WHERE name = ?1 AND (?2 IS NULL OR app_id = ?2) LIMIT 1",
                )
                .bind(&name)
                .bind(self.app_id)
                .fetch_optional(&mut *conn)
                .await?;
                if known.is_none() {
                    return Err(ApiError::not_found("intent").in_field("intent"));
                }
                let confidence = confidence
                    .or(self.intent.as_ref().map(|(_, c)| *c))
                    .unwrap_or(DEFAULT_INTENT_CONFIDENCE);
                self.intent = Some((name, confidence));
            }
            (None, Some(confidence)) => match &mut self.intent {
                Some((_, current)) => *current = confidence,
                None => {
                    return Err(ApiError::bad_request("intent_confidence needs an intent")
                        .in_field("intent_confidence"));
                }
            },
            (None, None) => {}
        }
        self.target = match (body.team_id, body.agent_id) {
            (Some(Some(_)), Some(Some(_))) => {
                return Err(ApiError::bad_request("give team_id or agent_id, not both"));
            }
            (Some(Some(team)), _) => Target::Team(team),
            (_, Some(Some(agent))) => Target::Agent(agent),
            (None, None) => self.target,
            _ => {
                return Err(ApiError::bad_request(
                    "a rule needs a team_id or an agent_id",
                ));
            }
        };
        let (exists, what) = match self.target {
            Target::Team(team) => (
                sqlx::query_scalar::<_, i64>("SELECT 1 FROM teams WHERE id = ?")
                    .bind(team)
                    .fetch_optional(&mut *conn)
                    .await?,
                "team",
            ),
            Target::Agent(agent) => (
                sqlx::query_scalar::<_, i64>("SELECT 1 FROM agents WHERE id = ?")
                    .bind(agent)
                    .fetch_optional(&mut *conn)
                    .await?,
                "agent",
            ),
        };
        if exists.is_none() {
            return Err(ApiError::not_found(what));
        }
        Ok(self)
    }

    fn ids(&self) -> (Option<TeamId>, Option<AgentId>) {
        match self.target {
            Target::Team(team) => (Some(team), None),
            Target::Agent(agent) => (None, Some(agent)),
        }
    }

    fn audit(&self) -> Value {
        let (team, agent) = self.ids();
        json!({"name": self.name, "enabled": self.enabled, "app_id": self.app_id,
               "keywords": self.keywords, "attributes": self.attributes,
               "team_id": team, "agent_id": agent,
               "intent": self.intent.as_ref().map(|(name, _)| name),
               "intent_confidence": self.intent.as_ref().map(|(_, c)| c)})
    }
}

async fn find(db: impl SqliteExecutor<'_>, id: RuleId) -> Result<Option<Rule>, ApiError> {
    Ok(
        sqlx::query_as(&format!("SELECT {COLUMNS} FROM routing_rules WHERE id = ?"))
            .bind(id)
            .fetch_optional(db)
            .await?,
    )
}

/// `admin` adds a rule at the end of the order, audited
/// (`routing.rule.create`).
pub async fn create(state: &AppState, admin: AgentId, body: RuleInput) -> Result<Rule, ApiError> {
    if body.team_id.flatten().is_none() && body.agent_id.flatten().is_none() {
        return Err(ApiError::bad_request(
            "a rule needs a team_id or an agent_id",
        ));
    }
    let blank = Fields {
        name: String::new(),
        enabled: true,
        app_id: None,
        keywords: Vec::new(),
        attributes: Map::new(),
        // Replaced by the body's target, which is required above.
        target: Target::Agent(AgentId::new()),
        intent: None,
    };
    // Checked and written under the write lock: the count holds under
    // concurrent creates, and the rule's team cannot be deleted meanwhile.
    let mut change = Change::begin(&state.db, Some(admin)).await?;
    let fields = blank.apply(&mut change, body).await?;
    let (team, agent) = fields.ids();
    let id = RuleId::new();
    let (count, last): (i64, i64) =
        sqlx::query_as("SELECT COUNT(*), COALESCE(MAX(position), 0) FROM routing_rules")
            .fetch_one(&mut *change)
            .await?;
    if count >= RULES_MAX {
        return Err(ApiError::Conflict(format!(
            "at most {RULES_MAX} routing rules"
        )));
    }
    sqlx::query(
        "INSERT INTO routing_rules (id, position, name, enabled, app_id, keywords, attributes, team_id, agent_id, created_at,
             intent, intent_confidence)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(id)
    .bind(last + 1)
    .bind(&fields.name)
    .bind(fields.enabled)
    .bind(fields.app_id)
    .bind(json!(fields.keywords).to_string())
    .bind(Value::Object(fields.attributes.clone()).to_string())
    .bind(team)
    .bind(agent)
    .bind(now_ms())
    .bind(fields.intent.as_ref().map(|(name, _)| name))
    .bind(fields.intent.as_ref().map(|(_, c)| *c))
    .execute(&mut *change)
    .await?;
    change
        .audit(
            "routing.rule.create",
            ("rule", &id.to_string()),
            fields.audit(),
        )
        .await?;
    change.commit(state).await?;
    find(&state.db, id)
        .await?
        .ok_or_else(|| ApiError::not_found("rule"))
}

/// `admin` changes rule `id` by the fields `body` gives, audited
/// (`routing.rule.update`).
pub async fn update(
    state: &AppState,
    admin: AgentId,
    id: RuleId,
    body: RuleInput,
) -> Result<Rule, ApiError> {
    // Read, merged and written under the write lock, so that concurrent
    // updates of different fields do not undo each other.
    let mut change = Change::begin(&state.db, Some(admin)).await?;
    let rule = find(&mut *change, id)
        .await?
        .ok_or_else(|| ApiError::not_found("rule"))?;
    let current = Fields::of(&rule)
        .ok_or_else(|| ApiError::internal(anyhow::anyhow!("rule {id} has no target")))?;
    let fields = current.apply(&mut change, body).await?;
    let (team, agent) = fields.ids();
    sqlx::query(
        "UPDATE routing_rules SET name = ?, enabled = ?, app_id = ?, keywords = ?, attributes = ?,
             team_id = ?, agent_id = ?, intent = ?, intent_confidence = ? WHERE id = ?",
    )
    .bind(&fields.name)
    .bind(fields.enabled)
    .bind(fields.app_id)
    .bind(json!(fields.keywords).to_string())
    .bind(Value::Object(fields.attributes.clone()).to_string())
    .bind(team)
    .bind(agent)
    .bind(fields.intent.as_ref().map(|(name, _)| name))
    .bind(fields.intent.as_ref().map(|(_, c)| *c))
    .bind(id)
    .execute(&mut *change)
    .await?;
    change
        .audit(
            "routing.rule.update",
            ("rule", &id.to_string()),
            fields.audit(),
        )
        .await?;
    change.commit(state).await?;
    find(&state.db, id)
        .await?
        .ok_or_else(|| ApiError::not_found("rule"))
}

/// `admin` deletes rule `id`, audited (`routing.rule.delete`).
pub async fn delete(state: &AppState, admin: AgentId, id: RuleId) -> Result<(), ApiError> {
    let mut change = Change::begin(&state.db, Some(admin)).await?;
    let removed = sqlx::query("DELETE FROM routing_rules WHERE id = ?")
        .bind(id)
        .execute(&mut *change)
        .await?
        .rows_affected();
    if removed == 0 {
        return Err(ApiError::not_found("rule"));
    }
    change
        .audit("routing.rule.delete", ("rule", &id.to_string()), json!({}))
        .await?;
    change.commit(state).await
}

/// `admin` sets the evaluation order: `ids` lists every rule exactly once,
/// in the new order (audited, `routing.rule.reorder`). Returns the rules
/// in that order.
pub async fn reorder(
    state: &AppState,
    admin: AgentId,
    ids: Vec<RuleId>,
) -> Result<Vec<Rule>, ApiError> {
    let mut change = Change::begin(&state.db, Some(admin)).await?;
    let mut current: Vec<(RuleId,)> = sqlx::query_as("SELECT id FROM routing_rules")
        .fetch_all(&mut *change)
        .await?;
    let mut given = ids.clone();
    current.sort();
    given.sort();
    given.dedup();
    if given.len() != ids.len() || given != current.iter().map(|(id,)| *id).collect::<Vec<_>>() {
        return Err(ApiError::bad_request("ids must list every rule exactly once").in_field("ids"));
    }
    for (index, id) in ids.iter().enumerate() {
        sqlx::query("UPDATE routing_rules SET position = ? WHERE id = ?")
            .bind(index as i64 + 1)
            .bind(id)
            .execute(&mut *change)
            .await?;
    }
    change
        .audit_all("routing.rule.reorder", json!({"ids": ids}))
        .await?;
    change.commit(state).await?;
    all(&state.db).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(app: Option<AppId>, keywords: &[&str], attributes: Value) -> Rule {
        Rule {
            id: RuleId::new(),
            name: "r".into(),
            position: 1,
            enabled: true,
            app_id: app,
            keywords: keywords.iter().map(|k| (*k).to_owned()).collect(),
            attributes: attributes.as_object().cloned().unwrap_or_default(),
            team_id: None,
            agent_id: Some(AgentId::new()),
            created_at: 0,
            intent: None,
            intent_confidence: None,
        }
    }

    #[test]
    fn every_given_condition_must_match() {
        let shop = AppId::new();
        let game = AppId::new();
        let none = json!({});
        assert!(rule(None, &[], json!({})).matches(shop, "anything", &none, None));
        assert!(rule(Some(shop), &[], json!({})).matches(shop, "x", &none, None));
        assert!(!rule(Some(game), &[], json!({})).matches(shop, "x", &none, None));
        // Keywords: any one, case-insensitive substring, Chinese included.
        let refunds = rule(None, &["退款", "Refund"], json!({}));
        assert!(refunds.matches(shop, "我要退款", &none, None));
        assert!(refunds.matches(shop, "a REFUND please", &none, None));
        assert!(!refunds.matches(shop, "退货", &none, None));
        // Attributes: every key equal as JSON (a string is not a number).
        let vip = rule(None, &[], json!({"plan": "vip", "tier": 2}));
        assert!(vip.matches(
            shop,
            "x",
            &json!({"plan": "vip", "tier": 2, "more": 1}),
            None
        ));
        assert!(!vip.matches(shop, "x", &json!({"plan": "vip", "tier": "2"}), None));
        assert!(!vip.matches(shop, "x", &json!({"plan": "vip"}), None));
        // All conditions together.
        let all = rule(Some(shop), &["退款"], json!({"plan": "vip"}));
        assert!(all.matches(shop, "退款", &json!({"plan": "vip"}), None));
        assert!(!all.matches(game, "退款", &json!({"plan": "vip"}), None));
        assert!(!all.matches(shop, "hello", &json!({"plan": "vip"}), None));
        // Intent: that intent, at the confidence or above.
        let mut refund_intent = rule(None, &[], json!({}));
        refund_intent.intent = Some("refund".into());
        refund_intent.intent_confidence = Some(0.7);
        let guess = |name: &str, confidence: f32| IntentGuess {
            name: name.into(),
            confidence,
        };
        assert!(refund_intent.matches(shop, "x", &none, Some(&guess("refund", 0.7))));
        assert!(refund_intent.matches(shop, "x", &none, Some(&guess("refund", 0.95))));
        assert!(!refund_intent.matches(shop, "x", &none, Some(&guess("refund", 0.69))));
        assert!(!refund_intent.matches(shop, "x", &none, Some(&guess("shipping", 0.99))));
        assert!(!refund_intent.matches(shop, "x", &none, None));
    }
}
