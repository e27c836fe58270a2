//! MQTT topics: filters (`+`, `#`) and topic templates (`site/{site}/{device_id}/{metric}`).
//!
//! A [`TopicFilter`] answers "is this topic covered by that subscription", with the MQTT 3.1.1
//! / 5 rules. A [`TopicTemplate`] additionally names levels: `{device_id}` and `{metric}` give
//! the series key, every other `{name}` becomes a tag `name=<level>`, `+` accepts any level
//! without naming it, a trailing `#` accepts any remaining levels, and every other level is a
//! literal that must match exactly. Both are parsed once (from configuration) and then match
//! topics without allocating, except for the tag list of a template that has tag placeholders.

use crate::IngestError;

/// Longest accepted topic filter or template, in bytes (MQTT's own limit is 65 535).
const MAX_PATTERN_LEN: usize = 65_535;

/// One level of a parsed [`TopicFilter`].
#[derive(Debug, Clone, PartialEq, Eq)]
enum FilterLevel {
    Literal(String),
    /// `+`: exactly one level, any content.
    AnyLevel,
    /// `#`: zero or more trailing levels.
    Rest,
}

/// An MQTT topic filter, e.g. `telegraf/#` or `sensors/+/temperature`.
///
/// Matching follows the MQTT specification: `+` matches exactly one level (possibly empty),
/// a trailing `#` matches the parent level and any number of levels below it, and a topic
/// starting with `$` (broker-internal topics such as `$SYS/...`) is never matched by a
/// filter whose first level is a wildcard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicFilter {
    filter: String,
    levels: Vec<FilterLevel>,
}

impl TopicFilter {
    /// Parses a filter. Fails when it is empty, longer than 65 535 bytes, contains NUL, has
    /// `#` anywhere but as the whole last level, or `+` not as a whole level.
    pub fn parse(filter: &str) -> Result<TopicFilter, IngestError> {
        let bad = |reason| IngestError::BadTopicFilter { filter: filter.to_string(), reason };
        if filter.is_empty() {
            return Err(bad("empty filter"));
        }
        if filter.len() > MAX_PATTERN_LEN {
            return Err(bad("longer than 65535 bytes"));
        }
        if filter.contains('\0') {
            return Err(bad("contains NUL"));
        }
        let raw_levels: Vec<&str> = filter.split('/').collect();
        let last_index = raw_levels.len() - 1;
        let mut levels = Vec::with_capacity(raw_levels.len());
        for (index, level) in raw_levels.into_iter().enumerate() {
            let parsed = match level {
                "#" if index == last_index => FilterLevel::Rest,
                "#" => return Err(bad("'#' must be the last level")),
                "+" => FilterLevel::AnyLevel,
                _ if level.contains(['#', '+']) => {
                    return Err(bad("wildcards must occupy a whole level"))
                }
                _ => FilterLevel::Literal(level.to_string()),
            };
            levels.push(parsed);
        }
        Ok(TopicFilter { filter: filter.to_string(), levels })
    }

    /// The filter as written.
    pub fn as_str(&self) -> &str {
        &self.filter
    }

    /// True when a message published on `topic` is delivered to a subscription with this
    /// filter.
    pub fn matches(&self, topic: &str) -> bool {
        let mut topic_levels = topic.split('/');
        for (index, level) in self.levels.iter().enumerate() {
            let wildcard_on_system_topic = index == 0 && topic.starts_with('$');
            match level {
                FilterLevel::Rest => return !wildcard_on_system_topic,
                FilterLevel::AnyLevel => {
                    if topic_levels.next().is_none() || wildcard_on_system_topic {
                        return false;
                    }
                }
                FilterLevel::Literal(literal) => {
                    if topic_levels.next() != Some(literal.as_str()) {
                        return false;
                    }
                }
            }
        }
        topic_levels.next().is_none()
    }
}

/// One level of a parsed [`TopicTemplate`].
#[derive(Debug, Clone, PartialEq, Eq)]
enum TemplateLevel {
    Literal(String),
    /// `+`: any one level, not captured.
    AnyLevel,
    /// Trailing `#`: any remaining levels, not captured.
    Rest,
    DeviceId,
    Metric,
    /// `{name}`: captured as the tag `name`.
    Tag(String),
}

/// A topic pattern that names levels, e.g. `site/{site}/{device_id}/{metric}`.
///
/// Syntax, level by level (levels are separated by `/`):
/// - `{device_id}` and `{metric}`: the series key. Both are required, each exactly once.
/// - `{name}` (`name` = ASCII letter or `_`, then letters, digits, `_`): the tag `name`,
///   whose value is the topic level. A name may appear once.
/// - `+`: any single level, ignored. A trailing `#`: any remaining levels, ignored.
/// - anything else: a literal level that must match exactly (case-sensitive).
///
/// Placeholders match non-empty levels only, so `site//d1/temp` does not match
/// `site/{site}/{device_id}/{metric}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicTemplate {
    template: String,
    levels: Vec<TemplateLevel>,
}

/// The levels a [`TopicTemplate`] captured from one topic.
///
/// Borrows the tag names from the template (`'s`) and the values from the topic (`'t`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateMatch<'s, 't> {
    /// The `{device_id}` level; `None` only for the built-in seed topic `iot/sensors/{metric}`
    /// where the device comes from the payload.
    pub device_id: Option<&'t str>,
    /// The `{metric}` level.
    pub metric: &'t str,
    /// `(name, value)` for each tag placeholder, in template order.
    pub tags: Vec<(&'s str, &'t str)>,
}

impl TopicTemplate {
    /// Parses a user template; `{device_id}` and `{metric}` are both required.
    pub fn parse(template: &str) -> Result<TopicTemplate, IngestError> {
        TopicTemplate::parse_with(template, true)
    }

    /// Parses a template; `require_device` false allows a template without `{device_id}`
    /// (used for the built-in seed topic, where the payload names the device).
    pub(crate) fn parse_with(
        template: &str,
        require_device: bool,
    ) -> Result<TopicTemplate, IngestError> {
        let bad = |reason| IngestError::BadTopicTemplate { template: template.to_string(), reason };
        if template.is_empty() {
            return Err(bad("empty template"));
        }
        if template.len() > MAX_PATTERN_LEN {
            return Err(bad("longer than 65535 bytes"));
        }
        if template.contains('\0') {
            return Err(bad("contains NUL"));
        }
        let raw_levels: Vec<&str> = template.split('/').collect();
        let last_index = raw_levels.len() - 1;
        let mut levels = Vec::with_capacity(raw_levels.len());
        let (mut has_device, mut has_metric) = (false, false);
        for (index, level) in raw_levels.into_iter().enumerate() {
            let parsed = if let Some(name) =
                level.strip_prefix('{').and_then(|rest| rest.strip_suffix('}'))
            {
                if !is_placeholder_name(name) {
                    return Err(bad("placeholder names are letters, digits and '_'"));
                }
                match name {
                    "device_id" if has_device => return Err(bad("{device_id} appears twice")),
                    "device_id" => {
                        has_device = true;
                        TemplateLevel::DeviceId
                    }
                    "metric" if has_metric => return Err(bad("{metric} appears twice")),
                    "metric" => {
                        has_metric = true;
                        TemplateLevel::Metric
                    }
                    _ => {
                        let duplicate = levels
                            .iter()
                            .any(|l| matches!(l, TemplateLevel::Tag(existing) if existing == name));
                        if duplicate {
                            return Err(bad("a tag placeholder appears twice"));
                        }
                        TemplateLevel::Tag(name.to_string())
                    }
                }
            } else {
                match level {
                    "+" => TemplateLevel::AnyLevel,
                    "#" if index == last_index => TemplateLevel::Rest,
                    "#" => return Err(bad("'#' must be the last level")),
                    _ if level.contains(['{', '}']) => {
                        return Err(bad("a placeholder must be a whole level, like {name}"))
                    }
                    _ if level.contains(['+', '#']) => {
                        return Err(bad("wildcards must occupy a whole level"))
                    }
                    _ => TemplateLevel::Literal(level.to_string()),
                }
            };
            levels.push(parsed);
        }
        if !has_metric {
            return Err(bad("{metric} is required"));
        }
        if require_device && !has_device {
            return Err(bad("{device_id} is required"));
        }
        Ok(TopicTemplate { template: template.to_string(), levels })
    }

    /// The template as written.
    pub fn as_str(&self) -> &str {
        &self.template
    }

    /// The MQTT filter to subscribe to for this template: every placeholder becomes `+`.
    pub fn subscription_filter(&self) -> String {
        let levels: Vec<&str> = self
            .levels
            .iter()
            .map(|level| match level {
                TemplateLevel::Literal(literal) => literal.as_str(),
                TemplateLevel::Rest => "#",
                TemplateLevel::AnyLevel
                | TemplateLevel::DeviceId
                | TemplateLevel::Metric
                | TemplateLevel::Tag(_) => "+",
            })
            .collect();
        levels.join("/")
    }

    /// The tag names this template captures, in template order.
    pub fn tag_names(&self) -> impl Iterator<Item = &str> {
        self.levels.iter().filter_map(|level| match level {
            TemplateLevel::Tag(name) => Some(name.as_str()),
            _ => None,
        })
    }

    /// Matches `topic` level by level; `None` when the structure or a literal differs, or a
    /// placeholder would capture an empty level.
    pub fn match_topic<'s, 't>(&'s self, topic: &'t str) -> Option<TemplateMatch<'s, 't>> {
        let mut topic_levels = topic.split('/');
        let mut device_id = None;
        let mut metric = None;
        let mut tags = Vec::new();
        for level in &self.levels {
            if matches!(level, TemplateLevel::Rest) {
                return Some(TemplateMatch { device_id, metric: metric?, tags });
            }
            let value = topic_levels.next()?;
            match level {
                TemplateLevel::Literal(literal) if literal != value => return None,
                TemplateLevel::Literal(_) | TemplateLevel::AnyLevel | TemplateLevel::Rest => {}
                _ if value.is_empty() => return None,
                TemplateLevel::DeviceId => device_id = Some(value),
                TemplateLevel::Metric => metric = Some(value),
                TemplateLevel::Tag(name) => tags.push((name.as_str(), value)),
            }
        }
        if topic_levels.next().is_some() {
            return None;
        }
        Some(TemplateMatch { device_id, metric: metric?, tags })
    }
}

fn is_placeholder_name(name: &str) -> bool {
    let mut chars = name.chars();
    let starts_well = chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
    starts_well && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// True when `topic` is a valid topic to publish on: non-empty, no wildcard, no NUL.
pub fn is_valid_publish_topic(topic: &str) -> bool {
    !topic.is_empty() && !topic.contains(['+', '#', '\0'])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filter(f: &str) -> TopicFilter {
        TopicFilter::parse(f).unwrap()
    }

    #[test]
    fn filters_follow_mqtt_matching_rules() {
        assert!(filter("telegraf/#").matches("telegraf/host1/cpu"));
        assert!(filter("telegraf/#").matches("telegraf"), "# also matches the parent level");
        assert!(!filter("telegraf/#").matches("telegrafx/a"));
        assert!(filter("a/+/c").matches("a/b/c"));
        assert!(filter("a/+/c").matches("a//c"), "+ matches an empty level");
        assert!(!filter("a/+/c").matches("a/b/c/d"));
        assert!(!filter("a/+/c").matches("a/b"));
        assert!(filter("+").matches("x"));
        assert!(!filter("+").matches("x/y"));
        assert!(filter("#").matches("anything/at/all"));
        assert!(!filter("#").matches("$SYS/broker/load"), "wildcards skip $ topics");
        assert!(!filter("+/broker").matches("$SYS/broker"));
        assert!(filter("$SYS/#").matches("$SYS/broker"));
        assert!(filter("a/b").matches("a/b"));
        assert!(!filter("a/b").matches("a/b/"));
        assert!(filter("a/b/").matches("a/b/"));
    }

    #[test]
    fn bad_filters_are_refused() {
        for bad in ["", "a/#/b", "a#", "a/b+", "+a/b", "a/\0"] {
            assert!(
                matches!(TopicFilter::parse(bad), Err(IngestError::BadTopicFilter { .. })),
                "{bad:?} should be refused"
            );
        }
    }

    #[test]
    fn templates_capture_device_metric_and_tags() {
        let template = TopicTemplate::parse("site/{site}/{device_id}/{metric}").unwrap();
        let m = template.match_topic("site/berlin/d17/temperature").unwrap();
        assert_eq!(m.device_id, Some("d17"));
        assert_eq!(m.metric, "temperature");
        assert_eq!(m.tags, vec![("site", "berlin")]);
        assert_eq!(template.subscription_filter(), "site/+/+/+");
        assert_eq!(template.tag_names().collect::<Vec<_>>(), ["site"]);
    }

    #[test]
    fn template_literals_and_wildcards_must_match() {
        let template = TopicTemplate::parse("plant/+/{device_id}/data/{metric}/#").unwrap();
        let m = template.match_topic("plant/line2/pump7/data/pressure/raw/x").unwrap();
        assert_eq!((m.device_id, m.metric), (Some("pump7"), "pressure"));
        assert!(template.match_topic("plant/line2/pump7/data/pressure").is_some());
        assert!(template.match_topic("plant/line2/pump7/DATA/pressure").is_none(), "case");
        assert!(template.match_topic("plants/line2/pump7/data/pressure").is_none());
        assert!(template.match_topic("plant/line2/pump7/data").is_none(), "too short");
        assert_eq!(template.subscription_filter(), "plant/+/+/data/+/#");

        let exact = TopicTemplate::parse("{device_id}/{metric}").unwrap();
        assert!(exact.match_topic("d/m/extra").is_none(), "too long");
        assert!(exact.match_topic("d").is_none(), "too short");
        assert!(exact.match_topic("/m").is_none(), "empty device level");
        assert!(exact.match_topic("d/").is_none(), "empty metric level");
    }

    #[test]
    fn bad_templates_are_refused() {
        let cases = [
            ("", "empty template"),
            ("a/{metric}", "{device_id} is required"),
            ("a/{device_id}", "{metric} is required"),
            ("{device_id}/{metric}/{device_id}", "{device_id} appears twice"),
            ("{device_id}/{metric}/{metric}", "{metric} appears twice"),
            ("{site}/{site}/{device_id}/{metric}", "a tag placeholder appears twice"),
            ("x{site}/{device_id}/{metric}", "a placeholder must be a whole level, like {name}"),
            ("{device_id}/{metric}/{}", "placeholder names are letters, digits and '_'"),
            ("{device_id}/{metric}/{1a}", "placeholder names are letters, digits and '_'"),
            ("{device_id}/{me-tric}", "placeholder names are letters, digits and '_'"),
            ("#/{device_id}/{metric}", "'#' must be the last level"),
            ("a+/{device_id}/{metric}", "wildcards must occupy a whole level"),
        ];
        for (template, reason) in cases {
            assert_eq!(
                TopicTemplate::parse(template),
                Err(IngestError::BadTopicTemplate { template: template.to_string(), reason }),
                "{template:?}"
            );
        }
    }

    #[test]
    fn publish_topics_have_no_wildcards() {
        assert!(is_valid_publish_topic("iot/sensors/t"));
        assert!(!is_valid_publish_topic(""));
        assert!(!is_valid_publish_topic("iot/+/t"));
        assert!(!is_valid_publish_topic("iot/#"));
    }
}
