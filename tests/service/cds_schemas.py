"""JSON Schemas of the CDS Hooks 2.0 shapes this service sends and receives.

Written from the specification's field tables (https://cds-hooks.hl7.org/2.0/, sections
"Discovery", "CDS Service Response" and "Feedback"): required fields, types, the indicator
and selectionBehavior words, the 140-character summary limit, and the conditional rules
(``selectionBehavior`` with suggestions, ``resource`` with create/update, ``appContext`` only
on smart links). ``additionalProperties`` stays open where the spec allows extensions.
"""

from __future__ import annotations

from typing import Any

import jsonschema_rs

CODING = {
    "type": "object",
    "required": ["code"],
    "properties": {
        "system": {"type": "string"},
        "code": {"type": "string"},
        "display": {"type": "string"},
    },
}

SERVICE = {
    "type": "object",
    "required": ["hook", "description", "id"],
    "properties": {
        "hook": {"type": "string"},
        "title": {"type": "string"},
        "description": {"type": "string"},
        "id": {"type": "string", "pattern": "^[A-Za-z0-9._~-]+$"},
        "prefetch": {"type": "object", "additionalProperties": {"type": "string"}},
        "usageRequirements": {"type": "string"},
    },
}

DISCOVERY = {
    "type": "object",
    "required": ["services"],
    "properties": {"services": {"type": "array", "items": SERVICE}},
}

ACTION = {
    "type": "object",
    "required": ["type", "description"],
    "properties": {
        "type": {"enum": ["create", "update", "delete"]},
        "description": {"type": "string"},
        "resource": {"type": "object", "required": ["resourceType"]},
        "resourceId": {"type": "string"},
    },
    "allOf": [
        {
            "if": {"properties": {"type": {"enum": ["create", "update"]}}},
            "then": {"required": ["resource"]},
        },
        {"if": {"properties": {"type": {"const": "delete"}}}, "then": {"required": ["resourceId"]}},
    ],
}

SUGGESTION = {
    "type": "object",
    "required": ["label"],
    "properties": {
        "label": {"type": "string"},
        "uuid": {"type": "string"},
        "isRecommended": {"type": "boolean"},
        "actions": {"type": "array", "items": ACTION},
    },
}

LINK = {
    "type": "object",
    "required": ["label", "url", "type"],
    "properties": {
        "label": {"type": "string"},
        "url": {"type": "string", "pattern": "^https?://"},
        "type": {"enum": ["absolute", "smart"]},
        "appContext": {"type": "string"},
        "autolaunchable": {"type": "boolean"},
    },
    "if": {"properties": {"type": {"const": "absolute"}}},
    "then": {"not": {"required": ["appContext"]}},
}

CARD = {
    "type": "object",
    "required": ["summary", "indicator", "source"],
    "properties": {
        "uuid": {"type": "string"},
        "summary": {"type": "string", "minLength": 1, "maxLength": 139},
        "detail": {"type": "string"},
        "indicator": {"enum": ["info", "warning", "critical"]},
        "source": {
            "type": "object",
            "required": ["label"],
            "properties": {
                "label": {"type": "string"},
                "url": {"type": "string", "pattern": "^https?://"},
                "icon": {"type": "string"},
                "topic": CODING,
            },
        },
        "suggestions": {"type": "array", "items": SUGGESTION},
        "selectionBehavior": {"enum": ["at-most-one", "any"]},
        "overrideReasons": {
            "type": "array",
            "items": {**CODING, "required": ["code", "display"]},
        },
        "links": {"type": "array", "items": LINK},
    },
    "if": {"required": ["suggestions"]},
    "then": {"required": ["selectionBehavior"]},
}

RESPONSE = {
    "type": "object",
    "required": ["cards"],
    "properties": {
        "cards": {"type": "array", "items": CARD},
        "systemActions": {"type": "array", "items": ACTION},
    },
}

FEEDBACK = {
    "type": "object",
    "required": ["feedback"],
    "properties": {
        "feedback": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["card", "outcome", "outcomeTimestamp"],
                "properties": {
                    "card": {"type": "string"},
                    "outcome": {"enum": ["accepted", "overridden"]},
                    "acceptedSuggestions": {
                        "type": "array",
                        "items": {"type": "object", "required": ["id"]},
                    },
                    "overrideReason": {
                        "type": "object",
                        "properties": {"reason": CODING, "userComment": {"type": "string"}},
                    },
                    "outcomeTimestamp": {"type": "string"},
                },
            },
        }
    },
}


def validate(schema: dict[str, Any], instance: Any) -> None:
    """Raise ``jsonschema_rs.ValidationError`` when ``instance`` breaks ``schema``."""
    jsonschema_rs.validator_for(schema).validate(instance)
