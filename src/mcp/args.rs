//! Tool arguments: deserialized with the path of a bad field in the error
//! ("retries: invalid value ..."), so the tool error names what to fix.

use std::sync::Arc;

use rmcp::ErrorData;
use rmcp::handler::server::common::{FromContextPart, schema_for_input};
use rmcp::handler::server::tool::ToolCallContext;
use rmcp::model::JsonObject;
use schemars::JsonSchema;
use serde::de::DeserializeOwned;

/// The arguments of a tool call, as `T`.
#[derive(Debug)]
pub struct Args<T>(pub T);

/// rmcp turns an invalid-params error with this prefix into a tool error
/// (`is_error: true`) rather than a protocol error.
const TOOL_ARGUMENT_ERROR: &str = "failed to deserialize parameters:";

impl<S, T: DeserializeOwned> FromContextPart<ToolCallContext<'_, S>> for Args<T> {
    fn from_context_part(context: &mut ToolCallContext<'_, S>) -> Result<Self, ErrorData> {
        let arguments = context.arguments.take().unwrap_or_default();
        parse(arguments).map(Args).map_err(|message| {
            ErrorData::invalid_params(format!("{TOOL_ARGUMENT_ERROR} {message}"), None)
        })
    }
}

/// `arguments` as `T`; the error names the offending field.
pub fn parse<T: DeserializeOwned>(arguments: JsonObject) -> Result<T, String> {
    let value = serde_json::Value::Object(arguments);
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if path == "." {
            inner.to_string()
        } else {
            format!("{path}: {inner}")
        }
    })
}

/// The input schema of a tool whose arguments are `T`.
pub fn schema<T: JsonSchema + std::any::Any>() -> Arc<JsonObject> {
    schema_for_input::<T>().unwrap_or_else(|e| {
        panic!(
            "invalid input schema for {}: {e}",
            std::any::type_name::<T>()
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mcp::tools::StartParams;

    fn args(v: serde_json::Value) -> JsonObject {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn errors_name_the_field() {
        let e = parse::<StartParams>(args(
            serde_json::json!({"name": "x", "command": ["true"], "retries": -1}),
        ))
        .unwrap_err();
        assert!(e.starts_with("retries: invalid value"), "{e}");
        let e = parse::<StartParams>(args(serde_json::json!({"name": "x"}))).unwrap_err();
        assert!(e.contains("missing field `command`"), "{e}");
        let e = parse::<StartParams>(args(
            serde_json::json!({"name": "x", "command": [], "cmd": 1}),
        ))
        .unwrap_err();
        assert!(e.contains("unknown field `cmd`"), "{e}");
    }
}
