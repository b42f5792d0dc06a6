#!/usr/bin/env python3
"""Writes contrib/grafana/mydex-connector.json (the Grafana dashboard over the
daemon's /metrics). Edit the panels here and run it again; CI checks that
every metric name in the JSON is one the daemon exports (tests/it/contrib.rs)."""

import json
import pathlib

DS = {"type": "prometheus", "uid": "${DS_PROMETHEUS}"}
panels = []


def panel(title, targets, kind="timeseries", w=12, h=8, unit=None, desc="", stack=False):
    n = len(panels)
    p = {
        "id": n + 1,
        "type": kind,
        "title": title,
        "description": desc,
        "datasource": DS,
        "gridPos": {"x": (n % 2) * 12 if w == 12 else 0, "y": (n // 2) * 8, "w": w, "h": h},
        "targets": [
            {"datasource": DS, "expr": e, "legendFormat": l, "refId": chr(65 + i)}
            for i, (e, l) in enumerate(targets)
        ],
        "fieldConfig": {"defaults": {"unit": unit or "short"}, "overrides": []},
        "options": {},
    }
    if stack:
        p["fieldConfig"]["defaults"]["custom"] = {"stacking": {"mode": "normal"}, "fillOpacity": 30}
    panels.append(p)


P = "mydex_connector_"
panel("Campaign progress: invitations by state",
      [(f'sum by (campaign, state) ({P}invitations{{instance=~"$instance"}})', "{{campaign}} {{state}}")],
      stack=True, desc="Each campaign's invitations by state (queued, link_issued, sent, connected, expired, failed).")
panel("Campaign progress: connected share",
      [(f'sum by (campaign) ({P}invitations{{state="connected",instance=~"$instance"}}) / sum by (campaign) ({P}invitations{{instance=~"$instance"}})', "{{campaign}}")],
      unit="percentunit", desc="Share of each campaign's invitations whose member connected.")
panel("Send rate against the configured rate",
      [(f'sum(rate({P}emails_total{{result="sent",instance=~"$instance"}}[5m]))', "sent per second"),
       (f'sum({P}campaign_rate_limit_per_second{{instance=~"$instance"}})', "configured (sum of limited campaigns)"),
       (f'sum by (campaign) ({P}campaign_rate_limit_per_second{{instance=~"$instance"}})', "configured {{campaign}}")],
      unit="ops", desc="Mails handed to SMTP per second, and each campaign's configured rate (absent when unlimited).")
panel("Failures by reason",
      [(f'sum by (result) (rate({P}emails_total{{result!="sent",instance=~"$instance"}}[5m]))', "mail {{result}}"),
       (f'sum by (endpoint, status) (rate({P}mydex_calls_total{{status!="ok",instance=~"$instance"}}[5m]))', "Mydex {{endpoint}} {{status}}"),
       (f'sum by (campaign) ({P}invitations{{state="failed",instance=~"$instance"}})', "failed invitations {{campaign}}")],
      desc="Mail deferrals and failures, Mydex API errors by endpoint and status, and failed invitations.")
panel("Campaigns paused",
      [(f'{P}campaign_paused{{instance=~"$instance"}}', "{{campaign}} paused"),
       (f'{P}campaign_paused_by_threshold{{instance=~"$instance"}}', "{{campaign}} by error_threshold")],
      desc="1 while paused (by an operator or by the error threshold).")
panel("Callbacks",
      [(f'sum by (type, result) (rate({P}callbacks_total{{instance=~"$instance"}}[5m]))', "{{type}} {{result}}"),
       (f'{P}callbacks_quarantined{{instance=~"$instance"}}', "quarantined"),
       (f'{P}unmatched_callbacks{{instance=~"$instance"}}', "unmatched")],
      desc="Callbacks from Mydex by type and result; quarantined and unmatched ones kept for `callbacks list`.")
panel("Sweep progress",
      [(f'{P}sweep_checked{{instance=~"$instance"}} / on (instance) group_left {P}members{{kind="total",instance=~"$instance"}}', "{{job}} checked"),
       (f'{P}sweep_running{{instance=~"$instance"}}', "{{job}} running"),
       (f'{P}sweep_errors{{instance=~"$instance"}}', "{{job}} errors"),
       (f'{P}sweep_held_members{{instance=~"$instance"}}', "held by the brake"),
       (f'{P}sweep_brake_engaged{{instance=~"$instance"}}', "brake engaged")],
      desc="The version and expiry sweeps: members checked against members total, errors, and the brake.")
panel("Delivery lag",
      [(f'histogram_quantile(0.5, sum by (le) (rate({P}delivery_latency_seconds_bucket{{instance=~"$instance"}}[15m])))', "p50"),
       (f'histogram_quantile(0.95, sum by (le) (rate({P}delivery_latency_seconds_bucket{{instance=~"$instance"}}[15m])))', "p95"),
       (f'sum by (state) ({P}records{{instance=~"$instance"}})', "records {{state}}")],
      unit="s", desc="From a reading's arrival to its delivery into the member's PDS, and records by state.")
panel("Mydex API latency",
      [(f'histogram_quantile(0.95, sum by (le, endpoint) (rate({P}mydex_call_duration_seconds_bucket{{instance=~"$instance"}}[5m])))', "p95 {{endpoint}}")],
      unit="s")
panel("Queue and store",
      [(f'{P}queue_depth{{instance=~"$instance"}}', "invitations waiting"),
       (f'{P}queue_files{{instance=~"$instance"}}', "queue files"),
       (f'rate({P}store_flushes_total{{instance=~"$instance"}}[5m])', "store flushes per second"),
       (f'{P}store_write_failed{{instance=~"$instance"}}', "store cannot write")])
panel("Members",
      [(f'{P}members{{instance=~"$instance"}}', "{{kind}}")])
panel("Health",
      [(f'{P}mydex_api_failing{{instance=~"$instance"}}', "Mydex API failing"),
       (f'{P}mydex_connection_denied{{instance=~"$instance"}}', "connection refused by Mydex"),
       (f'({P}callback_tls_cert_expiry_seconds{{instance=~"$instance"}} - time()) / 86400', "callback certificate: days left"),
       (f'{P}uptime_seconds{{instance=~"$instance"}}', "uptime (s)")])

dashboard = {
    "__inputs": [{"name": "DS_PROMETHEUS", "label": "Prometheus", "type": "datasource",
                  "pluginId": "prometheus", "pluginName": "Prometheus"}],
    "title": "mydex-connector",
    "uid": "mydex-connector",
    "description": "Campaigns, mail, Mydex API, callbacks, sweeps and delivery of mydex-connector (its admin API's /metrics).",
    "tags": ["mydex"],
    "timezone": "utc",
    "schemaVersion": 39,
    "version": 1,
    "refresh": "30s",
    "time": {"from": "now-6h", "to": "now"},
    "templating": {"list": [{
        "name": "instance", "type": "query", "datasource": DS, "label": "instance",
        "query": {"query": f"label_values({P}uptime_seconds, instance)", "refId": "instance"},
        "definition": f"label_values({P}uptime_seconds, instance)",
        "includeAll": True, "multi": True, "allValue": ".*", "refresh": 2,
    }]},
    "panels": panels,
}
out = pathlib.Path(__file__).with_name("mydex-connector.json")
out.write_text(json.dumps(dashboard, indent=2) + "\n")
