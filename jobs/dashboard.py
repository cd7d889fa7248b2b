"""The operators' spend dashboard (admin): spend and tokens over time per tenant, user, agent and model, and the
top spenders. The numbers come from ``jobs.usage.usage_report`` (SQL); the charts are Plotly figures built here
and drawn in the browser by plotly.js, which the ``plotly`` package ships (served from the admin, no CDN).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import plotly
import plotly.graph_objects as go
from django import forms
from django.db.models import Count, QuerySet, Sum
from django.utils import timezone

from aihub.access.models import Tenant
from jobs.models import Job
from jobs.usage import INTERVALS, usage_report

PLOTLY_JS = Path(plotly.__file__).resolve().parent / "package_data" / "plotly.min.js"
DIMENSIONS = ("tenant", "user", "agent", "model")
TOP_SPENDERS = 10


class SpendFilterForm(forms.Form):
    tenant = forms.ModelChoiceField(
        queryset=Tenant.objects.order_by("slug"), required=False, empty_label="All tenants", to_field_name="slug"
    )
    interval = forms.ChoiceField(choices=[(i, i) for i in INTERVALS], initial="day", required=False)
    start = forms.DateField(required=False, label="From", help_text="Default: 30 days ago.")
    end = forms.DateField(required=False, label="To", help_text="Inclusive; default: today.")

    def period(self) -> tuple[datetime, datetime]:
        today = timezone.now().date()
        end_day = self.cleaned_data.get("end") or today
        start_day = self.cleaned_data.get("start") or end_day - timedelta(days=30)
        start = datetime.combine(start_day, datetime.min.time(), tzinfo=UTC)
        end = datetime.combine(end_day + timedelta(days=1), datetime.min.time(), tzinfo=UTC)
        return start, end

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if data.get("start") and data.get("end") and data["start"] > data["end"]:
            raise forms.ValidationError("'From' must not be after 'To'.")
        return data


@dataclass(frozen=True)
class Chart:
    id: str
    title: str
    figure: dict[str, Any]
    points: int


# How a period reads on the x axis (categories: a date axis would invent ticks between a few bars).
_PERIOD_LABEL = {"hour": slice(0, 16), "day": slice(0, 10), "month": slice(0, 7)}


def _figure(
    series: list[dict[str, Any]], labels: dict[str, str], *, value: str, title: str, interval: str
) -> dict[str, Any]:
    """Stacked bars of ``value`` per period, one trace per group, as the JSON plotly.js draws."""
    periods = sorted({point["period"] for point in series})
    x = [period[_PERIOD_LABEL[interval]].replace("T", " ") for period in periods]
    traces = []
    for key, label in labels.items():
        by_period = {point["period"]: point[value] for point in series if point["key"] == key}
        traces.append(go.Bar(x=x, y=[by_period.get(period, 0) for period in periods], name=label or key))
    figure = go.Figure(
        data=traces,
        layout=go.Layout(
            title=title,
            barmode="stack",
            height=320,
            margin={"l": 60, "r": 20, "t": 50, "b": 50},
            legend={"orientation": "h"},
            xaxis={"type": "category"},
        ),
    )
    return dict(json.loads(figure.to_json()))


def spend_charts(*, jobs: QuerySet[Job], start: datetime, end: datetime, interval: str) -> list[Chart]:
    """Two charts per dimension: spend and tokens over time, stacked by tenant, user, agent or model."""
    charts = []
    for dimension in DIMENSIONS:
        report = usage_report(jobs=jobs, start=start, end=end, interval=interval, group_by=dimension)
        labels = {group["key"]: group["label"] for group in report["groups"]}
        for value, what in (("cost", "Spend"), ("total_tokens", "Tokens")):
            charts.append(
                Chart(
                    id=f"chart-{value.replace('_', '-')}-{dimension}",
                    title=f"{what} per {dimension}",
                    figure=_figure(
                        report["series"], labels, value=value, title=f"{what} per {dimension}", interval=interval
                    ),
                    points=len(report["series"]),
                )
            )
    return charts


def top_spenders(*, jobs: QuerySet[Job], start: datetime, end: datetime) -> list[dict[str, Any]]:
    """The users who spent most in the period (per tenant), biggest first."""
    rows = (
        jobs.filter(created_at__gte=start, created_at__lt=end, created_by__isnull=False)
        .order_by()
        .values("created_by__username", "tenant__slug")
        .annotate(jobs=Count("id"), tokens=Sum("input_tokens") + Sum("output_tokens"), cost=Sum("cost"))
        .order_by("-cost", "-tokens", "created_by__username")[:TOP_SPENDERS]
    )
    return [
        {
            "user": row["created_by__username"],
            "tenant": row["tenant__slug"],
            "jobs": row["jobs"],
            "tokens": int(row["tokens"] or 0),
            "cost": row["cost"] or 0,
        }
        for row in rows
    ]
