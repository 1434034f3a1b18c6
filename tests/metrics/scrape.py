"""Reading a scrape the way Prometheus does: parse the text exposition."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from kuma.metrics import Metrics


class Scrape:
    def __init__(self, text: str) -> None:
        self.text = text
        self.samples: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                key = (sample.name, frozenset(sample.labels.items()))
                self.samples[key] = sample.value

    def value(self, name: str, **labels: str) -> float | None:
        """The sample's value, or None when the series is not exposed."""
        return self.samples.get((name, frozenset(labels.items())))


def scrape(metrics: Metrics) -> Scrape:
    return Scrape(metrics.render().decode())
