//! Status conditions in the shape of Kubernetes' `metav1.Condition`
//! (<https://github.com/kubernetes/community/blob/master/contributors/devel/sig-architecture/api-conventions.md#typical-status-properties>).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

/// `status` value of a condition that holds.
pub const TRUE: &str = "True";
/// `status` value of a condition that does not hold.
pub const FALSE: &str = "False";
/// `status` value of a condition whose outcome is not known yet.
pub const UNKNOWN: &str = "Unknown";

/// JSON schema for a `conditions` list: `metav1.Condition` items, merged by `type`
/// (`x-kubernetes-list-type: map`, as the API conventions ask, so server-side apply merges them).
pub fn conditions_schema(generator: &mut schemars::generate::SchemaGenerator) -> schemars::Schema {
    let mut schema = generator.subschema_for::<Vec<Condition>>();
    let obj = schema.ensure_object();
    obj.insert("x-kubernetes-list-type".into(), "map".into());
    obj.insert("x-kubernetes-list-map-keys".into(), serde_json::json!(["type"]));
    schema
}

/// Finds the condition of type `type_`.
pub fn find_condition<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

/// Sets a condition in `conditions`, following the API conventions: `lastTransitionTime` changes
/// only when `status` flips (otherwise the old time is kept), `observedGeneration` records the
/// generation the condition was computed from. `now` is the transition time to use.
///
/// Returns `true` when anything changed (so callers can skip a no-op status write).
pub fn set_condition(
    conditions: &mut Vec<Condition>,
    type_: &str,
    status: &str,
    reason: &str,
    message: &str,
    observed_generation: Option<i64>,
    now: Time,
) -> bool {
    if let Some(existing) = conditions.iter_mut().find(|c| c.type_ == type_) {
        let flipped = existing.status != status;
        let changed = flipped
            || existing.reason != reason
            || existing.message != message
            || existing.observed_generation != observed_generation;
        if flipped {
            existing.last_transition_time = now;
        }
        existing.status = status.to_string();
        existing.reason = reason.to_string();
        existing.message = message.to_string();
        existing.observed_generation = observed_generation;
        return changed;
    }
    conditions.push(Condition {
        type_: type_.to_string(),
        status: status.to_string(),
        reason: reason.to_string(),
        message: message.to_string(),
        observed_generation,
        last_transition_time: now,
    });
    true
}

/// JSON schema for a container env list (`[]core/v1.EnvVar`) with the bounds CEL cost
/// estimation needs (at most 64 entries, names ≤ 253 bytes, values ≤ 32 KiB) and a rule that
/// credentials come from Secrets: a literal `value` is refused for names containing `KEY`,
/// `TOKEN`, `SECRET` or `PASSWORD` (any case).
pub fn env_schema(generator: &mut schemars::generate::SchemaGenerator) -> schemars::Schema {
    let mut schema = generator.subschema_for::<Vec<k8s_openapi::api::core::v1::EnvVar>>();
    let obj = schema.ensure_object();
    obj.insert("maxItems".into(), 64.into());
    if let Some(props) = obj.get_mut("items").and_then(|i| i.get_mut("properties")) {
        if let Some(name) = props.get_mut("name").and_then(|n| n.as_object_mut()) {
            name.insert("maxLength".into(), 253.into());
        }
        if let Some(value) = props.get_mut("value").and_then(|n| n.as_object_mut()) {
            value.insert("maxLength".into(), 32768.into());
        }
    }
    obj.insert(
        "x-kubernetes-validations".into(),
        serde_json::json!([{
            "rule": "self.all(e, !has(e.value) || !e.name.upperAscii().matches('KEY|TOKEN|SECRET|PASSWORD'))",
            "message": "credentials in env must use valueFrom.secretKeyRef, not a literal value"
        }]),
    );
    schema
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: i64) -> Time {
        Time(k8s_openapi::jiff::Timestamp::from_second(s).unwrap())
    }

    #[test]
    fn transition_time_moves_only_when_status_flips() {
        let mut c = vec![];
        assert!(set_condition(
            &mut c,
            "Succeeded",
            UNKNOWN,
            "Running",
            "m",
            Some(1),
            t(10)
        ));
        assert!(!set_condition(
            &mut c,
            "Succeeded",
            UNKNOWN,
            "Running",
            "m",
            Some(1),
            t(20)
        ));
        assert_eq!(c[0].last_transition_time, t(10));
        assert!(set_condition(
            &mut c,
            "Succeeded",
            UNKNOWN,
            "Running",
            "other",
            Some(1),
            t(30)
        ));
        assert_eq!(c[0].last_transition_time, t(10));
        assert!(set_condition(
            &mut c,
            "Succeeded",
            TRUE,
            "Succeeded",
            "done",
            Some(1),
            t(40)
        ));
        assert_eq!(c[0].last_transition_time, t(40));
        assert_eq!(c.len(), 1);
    }
}
