"""The helm provider's preflight with the real helm CLI on a real API server."""

from __future__ import annotations

from pathlib import Path

from providers.capabilities import PreflightReport, Verdict
from tests.support.helm_releases import HelmProviderFactory, kill_midway, release, step
from tests.support.kube import Helm


def verdicts(report: PreflightReport) -> dict[str, Verdict]:
    """Map each check's name to its verdict."""
    return {check.name: check.verdict for check in report.checks}


def why(report: PreflightReport, name: str) -> str:
    """The one line of why of the named check."""
    return next(check.why for check in report.checks if check.name == name)


async def test_exact_revisions_and_the_names_of_values_that_change(
    helm: Helm,
    helm_binary: str,
    kube_namespace: str,
    helm_provider: HelmProviderFactory,
    tmp_path: Path,
) -> None:
    steps = [
        step(1, "1.0.0", "v1", "apiToken=first-secret-value"),
        step(2, "2.0.0", "v2", "apiToken=second-secret-value", "feature.beta=true"),
    ]
    await release(helm, tmp_path, kube_namespace, "shop", steps)
    provider = helm_provider()

    report = await provider.preflight("1.0.0")

    assert verdicts(report) == {
        "helm-binary": Verdict.PASS,
        "release-idle": Verdict.PASS,
        "revision-deployable": Verdict.PASS,
    }
    assert why(report, "helm-binary") == f"helm found: {helm_binary} (v4.3.2)."
    assert why(report, "release-idle") == "No operation in progress (revision 2 is deployed)."
    assert report.current is not None
    assert report.current.exact == "shop revision 2 (tiny-0.2.0, app 2.0.0)"
    assert (report.target.version, report.target.exact) == (
        "1.0.0",
        "shop revision 1 (tiny-0.1.0, app 1.0.0)",
    )
    assert report.changes == [
        "chart: tiny-0.2.0 -> tiny-0.1.0",
        "app version: 2.0.0 -> 1.0.0",
        "values changed: apiToken, image.tag",
        "values removed: feature.beta",
    ]
    assert "secret-value" not in " ".join(report.changes)


async def test_a_pending_release_fails_release_idle_and_a_failed_newest_warns(
    helm: Helm,
    kubeconfig: str,
    helm_binary: str,
    kube_namespace: str,
    helm_provider: HelmProviderFactory,
    tmp_path: Path,
) -> None:
    packages = await release(
        helm, tmp_path, kube_namespace, "shop", [step(1, "1.0.0", "v1"), step(2, "2.0.0", "v2")]
    )
    broken = await helm(
        "upgrade",
        "shop",
        packages[1],
        "--namespace",
        kube_namespace,
        "--set",
        "image.repository=registry.example/crashloop",
        "--wait=watcher",
        "--timeout",
        "5s",
        check=False,
    )
    assert broken.returncode == 1
    provider = helm_provider()

    report = await provider.preflight("2")
    assert verdicts(report)["release-idle"] is Verdict.PASS
    assert verdicts(report)["revision-deployable"] is Verdict.WARN
    assert why(report, "revision-deployable").startswith(
        "Revision 2 was deployed successfully; the newest, revision 3, failed (Upgrade"
    )
    assert report.changes[:2] == ["chart: tiny-0.2.0 (the same)", "app version: 2.0.0 (the same)"]
    # Without --reuse-values the broken upgrade also reset the tag to the chart's default.
    assert report.changes[2] == "values changed: image.repository, image.tag"

    await kill_midway(helm_binary, kubeconfig, tmp_path, kube_namespace, "shop", packages[1])
    report = await provider.preflight("2")
    assert verdicts(report)["release-idle"] is Verdict.FAIL
    assert why(report, "release-idle").startswith(
        "Release shop is pending-upgrade at revision 4 since "
    )


async def test_a_missing_helm_binary_fails_its_check(
    helm_provider: HelmProviderFactory, tmp_path: Path
) -> None:
    report = await helm_provider(helm_binary="helm-not-installed").preflight("2")

    assert verdicts(report) == {"helm-binary": Verdict.FAIL}
    assert why(report, "helm-binary").startswith(
        "The helm CLI was not found: `helm-not-installed` is not on PATH."
    )
    assert report.current is None


async def test_identity_now_follows_an_upgrade(
    helm: Helm, kube_namespace: str, helm_provider: HelmProviderFactory, tmp_path: Path
) -> None:
    packages = await release(helm, tmp_path, kube_namespace, "shop", [step(1, "1.0.0", "v1")])
    provider = helm_provider()
    assert (await provider.identity_now()).exact == "shop revision 1 (tiny-0.1.0, app 1.0.0)"

    await helm("upgrade", "shop", packages[0], "--namespace", kube_namespace, "--set", "x=1")

    identity = await provider.identity_now()
    assert (identity.version, identity.exact) == (
        "1.0.0",
        "shop revision 2 (tiny-0.1.0, app 1.0.0)",
    )
