"""The HTTP API as OpenAPI 3.1, served at GET /openapi.json (and fuzzed by the test suite)."""

from __future__ import annotations

from ..model import IAB_SIZES
from ..request import DEVICES, SLOT_TYPES

ID = {"type": "string", "pattern": "^[A-Za-z0-9_.:@/-]{1,128}$"}
TEXT = {"type": "string", "maxLength": 2048}
ERROR = {"type": "object", "required": ["error", "detail"],
         "properties": {"error": {"type": "string"}, "detail": {"type": "string"}}}
DISPLAY_SIZES = [s for s in IAB_SIZES if s != "native"]


def nullable(schema: dict) -> dict:
    """An optional field: null is read as absent."""
    return {"anyOf": [schema, {"type": "null"}]}


def _error(description: str) -> dict:
    return {"description": description,
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}


UNLOGGED = _error("Not recorded (event log not writable); retry after the Retry-After seconds: "
                  "the retry counts once")


SLOT_REQUEST = {
    "type": "object", "required": ["slots"],
    "properties": {
        "page": nullable({"type": "object", "properties": {
            "item_id": nullable(ID), "url": nullable(TEXT), "title": nullable(TEXT),
            "section": nullable(TEXT), "image_url": nullable(TEXT), "published": nullable(TEXT),
            "keywords": nullable({"type": "array", "maxItems": 50,
                                  "items": {"type": "string", "maxLength": 64}})}}),
        "user": nullable({"type": "object", "properties": {"id": nullable(ID)}}),
        "device": nullable({"enum": list(DEVICES)}),
        "country": nullable({"type": "string", "pattern": "^[A-Z]{2}$"}),
        "privacy": nullable({
            "type": "object", "description": "The reader's privacy signals (TCF v2.2 and Global "
            "Privacy Control, also read from `Sec-GPC: 1`). Without the consents a use needs, the "
            "reader id is not used for it; a malformed object or TC string counts as no consent.",
            "properties": {"gdpr_applies": nullable({"type": "boolean"}),
                           "tc_string": nullable({"type": "string"}),
                           "gpc": nullable({"type": "boolean"})}}),
        "slots": {"type": "array", "minItems": 1, "maxItems": 20, "items": {
            "type": "object", "required": ["id"],
            "description": "A display slot needs sizes, a placement, or both; type defaults to "
                           "the placement's type.",
            "properties": {
                "id": ID, "type": nullable({"enum": list(SLOT_TYPES)}),
                "placement": nullable({"type": "string", "description": "A named placement from "
                                       "config; it supplies type, sizes and count when left out."}),
                "sizes": nullable({"type": "array", "minItems": 1, "items": {"enum": DISPLAY_SIZES}}),
                "count": nullable({"type": "integer", "minimum": 1, "maximum": 24})}}}},
}

RECS_ITEM = {"type": "object", "required": ["item_id", "title", "url", "sponsored", "click_url"],
             "properties": {"item_id": {"type": "string"}, "title": {"type": "string"},
                            "url": {"type": "string"}, "image_url": {"type": ["string", "null"]},
                            "sponsored": {"type": "boolean"}, "click_url": {"type": "string"},
                            "impression_url": {"type": "string"},
                            "campaign_id": {"type": "integer"}}}

FILL = {"type": "object", "required": ["type"], "properties": {
    "type": {"enum": list(SLOT_TYPES)}, "fill": {"type": "boolean"},
    "campaign_id": {"type": "integer"}, "creative_id": {"type": "string"},
    "variant": {"type": "string"}, "width": {"type": "integer"}, "height": {"type": "integer"},
    "html": {"type": "string"}, "image_url": {"type": "string"},
    "impression_url": {"type": "string"}, "click_url": {"type": "string"},
    "strategy": {"enum": ["personal", "related", "popular"]},
    "items": {"type": "array", "items": RECS_ITEM}}}


def openapi_spec(base_url: str) -> dict:
    json_body = {"application/json": {"schema": {"$ref": "#/components/schemas/SlotRequest"}}}
    token = [{"name": "t", "in": "query", "required": True, "schema": {"type": "string"}}]
    return {
        "openapi": "3.1.0",
        "info": {"title": "adserve", "version": "1", "description":
                 "Fills display and recommendation slots of news pages."},
        "servers": [{"url": base_url}],
        "paths": {
            "/v1/slots": {"post": {
                "summary": "Fill the slots of one page view",
                "requestBody": {"required": True, "content": json_body},
                "responses": {
                    "200": {"description": "One fill per slot id", "content": {"application/json": {
                        "schema": {"type": "object", "required": ["slots"], "properties": {
                            "slots": {"type": "object", "additionalProperties": FILL}}}}}},
                    "400": _error("Malformed or invalid request"),
                    "413": _error("Body over the size limit"),
                    "503": _error("Overloaded, or the event log cannot be written; retry after "
                                  "the Retry-After seconds")}}},
            "/t/i": {"get": {"summary": "Impression pixel", "parameters": token, "responses": {
                "200": {"description": "1x1 GIF", "content": {"image/gif": {}}},
                "400": _error("Malformed token"), "403": _error("Forged or altered token"),
                "410": _error("Expired token"), "503": UNLOGGED}}},
            "/t/c": {"get": {"summary": "Click redirect", "parameters": token + [
                {"name": "i", "in": "query", "required": False, "schema": {"type": "string"},
                 "description": "Position of the clicked article in a widget's token"}], "responses": {
                "302": {"description": "Redirect to the ad's signed landing URL or the widget's article"},
                "400": _error("Malformed token"), "403": _error("Forged or altered token"),
                "410": _error("Expired token, or an article no longer in the catalog"),
                "503": UNLOGGED}}},
            "/v1/items/{item_id}": {"put": {
                "summary": "Upsert one catalog article (CMS; bearer token)",
                "parameters": [{"name": "item_id", "in": "path", "required": True, "schema": ID}],
                "requestBody": {"required": True, "content": {"application/json": {"schema": {
                    "type": "object", "required": ["url", "title"], "properties": {
                        "url": {"type": "string"}, "title": {"type": "string"},
                        "image_url": {"type": "string"}, "section": {"type": "string"},
                        "published": {"type": "number"}, "live": {"type": "boolean"}}}}}},
                "responses": {"200": {"description": "Stored"}, "400": _error("Invalid item"),
                              "401": _error("Missing or wrong token"),
                              "403": _error("Upserts disabled"),
                              "503": _error("Not stored (journal not writable), not applied; retry "
                                            "after the Retry-After seconds")}}},
            "/healthz": {"get": {"summary": "Liveness; status 'degraded' names what is failing "
                                            "(event_log, state)",
                                 "responses": {"200": {"description": "ok or degraded"}}}},
            "/metrics": {"get": {"summary": "Prometheus metrics",
                                 "responses": {"200": {"description": "text exposition"}}}},
            "/v1/config/status": {"get": {
                "summary": "Config and model status: counts for anyone, the errors themselves with "
                           "'Authorization: Bearer $ADSERVE_ADMIN_TOKEN'",
                "responses": {"200": {"description": "status"}, "401": _error("Wrong token"),
                              "403": _error("Details disabled: no admin token set")}}},
        },
        "components": {"schemas": {"SlotRequest": SLOT_REQUEST, "Error": ERROR}},
    }
