"""The kubernetes provider's settings refuse names the API would not take, before any call."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from providers.kubernetes import KubernetesSettings


@pytest.mark.parametrize(
    "field, value",
    [
        ("namespace", "-- ab; rm"),
        ("namespace", "Shop"),
        ("name", "web/../other"),
        ("name", "web\n"),
        ("selector", "app=web\nx"),
        ("container", "web; rm -rf /"),
    ],
)
def test_a_name_kubernetes_would_not_take_is_refused(field: str, value: str) -> None:
    values = {"provider": "kubernetes", "namespace": "shop", "name": "web", field: value}
    if field == "selector":
        values.pop("name")
    with pytest.raises(ValidationError):
        KubernetesSettings.model_validate(values)


def test_exactly_one_of_name_and_selector() -> None:
    with pytest.raises(ValidationError, match="exactly one of `name` and `selector`"):
        KubernetesSettings.model_validate({"provider": "kubernetes", "namespace": "shop"})
    settings = KubernetesSettings.model_validate(
        {"provider": "kubernetes", "namespace": "shop", "selector": "app=web,tier!=db"}
    )
    assert settings.selector == "app=web,tier!=db"


def test_an_argo_cd_application_name_is_checked_too() -> None:
    values = {
        "provider": "kubernetes",
        "namespace": "shop",
        "name": "web",
        "argocd": {"application": "shop; rm", "namespace": "argocd"},
    }
    with pytest.raises(ValidationError):
        KubernetesSettings.model_validate(values)
