"""Reading GET /metrics as Prometheus does: the text parsed by prometheus_client's own parser."""

from django.test import Client
from prometheus_client.parser import text_string_to_metric_families

METRICS_URL = "/metrics"


class Scrape(dict):
    """One scrape's samples: {(sample name, ((label, value), ...)): value}."""

    def value(self, name: str, **labels: str) -> float:
        """The sample's value; KeyError when the scrape has no such series."""
        return self[(name, tuple(sorted(labels.items())))]

    def series(self, name: str) -> dict[tuple, float]:
        """Every sample of one name, keyed by its labels."""
        return {labels: value for (sample, labels), value in self.items() if sample == name}

    def label_values(self, name: str, label: str) -> set[str]:
        return {dict(labels)[label] for labels in self.series(name)}


def parse(text: str) -> Scrape:
    scrape = Scrape()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            scrape[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return scrape


def scrape(client: Client | None = None, *, token: str | None = None) -> Scrape:
    """GET /metrics (with the bearer token, if given), check it answered 200, and parse it."""
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    response = (client or Client()).get(METRICS_URL, headers=headers)
    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("text/plain; version=0.0.4")
    return parse(response.content.decode())
