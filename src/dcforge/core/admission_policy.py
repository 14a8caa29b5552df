"""Admission policies for a consumer's cluster: what ``dcforge verify-image`` checks, enforced
when a Pod is admitted (pure: settings in, Kubernetes manifests out).

Every image under a repository prefix must be signed by the identity and carry, signed by
it too, an in-toto attestation of each predicate type publish writes (SPDX SBOM, SLSA v1
provenance: :data:`dcforge.core.attestations.PREDICATE_TYPES`) and, if asked, OpenVEX.
Neither controller checks an attestation "if present": VEX is required or not mentioned.
Given the source repository, the provenance must name it, as :mod:`.provenance` writes it.

* :func:`kyverno`: a ``ClusterPolicy``, one ``verifyImages`` rule (tags become digests, a
  failure refuses the Pod). Each attestation has its own attestors: Kyverno reads one
  without through an empty attestor, checking no signer (``verifyAttestations``, kyverno
  ``pkg/engine/internal/imageverifier.go``). Needs Kyverno 1.14+: the rule's
  ``failureAction`` came in 1.13, and older releases ignored ``subjectRegExp``
  (https://osv.dev/vulnerability/GO-2025-3562).
* :func:`sigstore`: a policy-controller ``ClusterImagePolicy``. Authorities are alternatives
  and one listing attestations checks only those, so there are two (signature, attestations)
  and a policy requiring both; rego, not CUE, because CUE unifies a missing field without
  error. It acts only in namespaces labelled ``policy.sigstore.dev/include=true``.

Both check the digest the Pod names. A multi-platform image is signed at its index and each
platform image but attested per platform image (``release.Image.attested``): a Pod naming
its tag or index digest is refused, one naming a platform image's digest admitted.

Shapes from https://kyverno.io/docs/policy-types/cluster-policy/verify-images,
https://kyverno.io/docs/writing-policies/verify-images/sigstore/,
https://github.com/kyverno/kyverno/blob/v1.14.0/config/crds/kyverno/kyverno.io_clusterpolicies.yaml,
https://docs.sigstore.dev/policy-controller/overview/,
https://github.com/sigstore/policy-controller/blob/v0.15.1/docs/api-types/index.md,
https://github.com/sigstore/policy-controller/blob/v0.15.1/config/300-clusterimagepolicy.yaml
and its ``pkg/webhook/validator.go`` (authorities, ctlog). The unit tests validate both
documents against those two CRDs' schemas.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import dataclass
from typing import Any

import yaml

from dcforge.core import provenance, vex
from dcforge.core.attestations import PREDICATE_TYPES, PROVENANCE_TYPE, SBOM_TYPE
from dcforge.core.errors import ConfigError

VEX_TYPE = vex.CONTEXT
REKOR_URL = "https://rekor.sigstore.dev"
FULCIO_URL = "https://fulcio.sigstore.dev"
DEFAULT_NAME = "dcforge-images"
SOURCE_FIELD = "buildDefinition.externalParameters.source.repository"
# Each predicate type's attestation name (Kyverno's context variable, policy-controller's key).
_NAMES = {PREDICATE_TYPES[SBOM_TYPE]: "sbom", PROVENANCE_TYPE: "provenance", VEX_TYPE: "vex"}
_SIGNATURE, _ATTESTATIONS = "signature", "attestations"  # the policy-controller authorities
# Distribution's reference grammar: host[:port], then lowercase path components.
_HOST = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?(?::[0-9]{1,5})?")
_COMPONENT = re.compile(r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*")
_PEM = re.compile(r"-----BEGIN PUBLIC KEY-----\n([A-Za-z0-9+/=\n]+)\n-----END PUBLIC KEY-----")
_NAME = re.compile(r"[a-z0-9](?:[a-z0-9.-]{0,251}[a-z0-9])?")  # a DNS-1123 subdomain
_EXAMPLE = "e.g. ghcr.io/acme/devcontainers"


@dataclass(frozen=True)
class Identity:
    """Who must have signed, as ``cosign verify`` is told (``Signer.verify_flags``): a public
    key (PEM text, as in ``cosign.pub``) or a keyless certificate identity — the OIDC
    ``issuer`` and one of ``subject`` or ``subject_regexp`` (which the whole subject must
    match). ``tlog``: the signatures are in Rekor. ``repository`` and ``ref``, keyless: the
    run that signed (a reusable workflow's callers all sign as it). Kyverno checks them as
    the certificate's extensions; policy-controller matches issuer and subject only, and
    its policy pins the source repository through the provenance. ConfigError when no
    policy could work."""

    public_key_pem: str = ""
    issuer: str = ""
    subject: str = ""
    subject_regexp: str = ""
    tlog: bool = False
    repository: str = ""
    ref: str = ""

    def __post_init__(self) -> None:
        keyless = (self.issuer, self.subject, self.subject_regexp, self.repository, self.ref)
        if self.public_key_pem and any(keyless):
            raise ConfigError("an identity is a public key or a keyless issuer, not both")
        if self.public_key_pem:
            _check_pem(self.public_key_pem)
        else:
            _check_keyless(self)

    @property
    def keyless(self) -> bool:
        return not self.public_key_pem


def _check_pem(text: str) -> None:
    if "PRIVATE KEY" in text:
        raise ConfigError("that is a private key: an admission policy needs the public key")
    found = _PEM.fullmatch(text.strip().replace("\r\n", "\n"))
    try:
        body = base64.b64decode(found[1].replace("\n", ""), validate=True) if found else b""
    except binascii.Error:
        body = b""
    if not body:
        raise ConfigError("the public key is not PEM (-----BEGIN PUBLIC KEY-----, as cosign.pub)")


def _check_keyless(identity: Identity) -> None:
    if not identity.issuer:
        raise ConfigError(
            "an identity needs a public key (PEM) or an OIDC issuer with a subject or "
            "subject_regexp: an empty one would trust any signer"
        )
    if not re.fullmatch(r"https://[^\s/]+(?:/\S*)?", identity.issuer):
        raise ConfigError(f"the OIDC issuer {identity.issuer!r} is not an https URL")
    if bool(identity.subject) == bool(identity.subject_regexp):
        raise ConfigError("a keyless identity needs exactly one of subject and subject_regexp")
    try:
        re.compile(_anchored(identity.subject_regexp))
    except re.error as err:
        raise ConfigError(f"subject_regexp {identity.subject_regexp!r}: {err}") from None
    if not identity.tlog:
        # https://github.com/sigstore/cosign/pull/2620: without a Rekor entry or a timestamp
        # cosign checks the certificate against the current time, long after it expired.
        raise ConfigError(
            "keyless signatures verify only with the transparency log: without a Rekor "
            "entry the short-lived certificate has expired by the time a Pod starts"
        )


def _anchored(pattern: str) -> str:
    """cosign matches a subject regexp anywhere in the subject (Go's MatchString): anchored,
    ``https://github.com/acme/.*`` cannot admit ``https://evil.example/github.com/acme/``."""
    return f"^(?:{pattern})$"


def _subject(identity: Identity) -> dict[str, str]:
    if identity.subject:
        return {"subject": identity.subject}
    return {"subjectRegExp": _anchored(identity.subject_regexp)}


def _pem(identity: Identity) -> str:
    return identity.public_key_pem.strip().replace("\r\n", "\n") + "\n"


@dataclass(frozen=True)
class _Inputs:
    host: str  # lowercased; each policy spells Docker Hub as its controller matches it
    path: str
    source: str  # as the provenance names it; "" for no condition
    types: tuple[str, ...]
    name: str


def _inputs(repository: str, source_repo: str, require_vex: bool, name: str) -> _Inputs:
    """The checked inputs of either policy; ConfigError, in one line, for nonsense."""
    host, _, path = repository.strip().partition("/")
    path = path.removesuffix("/")
    if "." not in host and ":" not in host and host != "localhost":
        raise ConfigError(f"{repository!r} names no registry host, {_EXAMPLE}")
    if not _HOST.fullmatch(host) or not all(map(_COMPONENT.fullmatch, path.split("/"))):
        raise ConfigError(
            f"{repository!r} is not a repository prefix: lowercase registry/namespace, no "
            f"tag, digest or wildcard (the policy adds one), {_EXAMPLE}"
        )
    source = provenance.source_uri({}, source_repo) if source_repo else ""
    if source == provenance.LOCAL_SOURCE:
        raise ConfigError(
            f"{source_repo!r} is not a repository URL a provenance names (https or ssh), "
            "e.g. https://github.com/acme/devcontainers"
        )
    if not _NAME.fullmatch(name):
        raise ConfigError(f"{name!r} is not a Kubernetes object name (lowercase, digits, - and .)")
    types = (*PREDICATE_TYPES.values(), *([VEX_TYPE] if require_vex else []))
    return _Inputs(host.lower(), path, source, types, name)


def kyverno(
    repository: str,
    identity: Identity,
    *,
    source_repo: str = "",
    require_vex: bool = False,
    name: str = DEFAULT_NAME,
) -> dict[str, Any]:
    """A Kyverno ``ClusterPolicy`` enforcing the signature and attestations of every image
    under the ``repository`` prefix (``ghcr.io/acme/devcontainers``: its ``/*`` images, at
    any depth, tag or digest)."""
    given = _inputs(repository, source_repo, require_vex, name)
    host = "docker.io" if given.host == "index.docker.io" else given.host
    verify = {
        "imageReferences": [f"{host}/{given.path}/*"],
        "type": "Cosign",
        "failureAction": "Enforce",
        "mutateDigest": True,
        "verifyDigest": True,
        "required": True,
        "attestors": _kyverno_attestors(identity),
        "attestations": [_kyverno_attestation(ptype, identity, given) for ptype in given.types],
    }
    rule = {
        "name": "verify-dcforge-images",
        "match": {"any": [{"resources": {"kinds": ["Pod"]}}]},
        "verifyImages": [verify],
    }
    return {
        "apiVersion": "kyverno.io/v1",
        "kind": "ClusterPolicy",
        "metadata": {"name": given.name},
        "spec": {
            "background": False,
            # Four signed manifests read per image: Kyverno's 10 s default can be short.
            "webhookConfiguration": {"failurePolicy": "Fail", "timeoutSeconds": 30},
            "rules": [rule],
        },
    }


def _kyverno_attestation(ptype: str, identity: Identity, given: _Inputs) -> dict[str, Any]:
    entry = {"name": _NAMES[ptype], "type": ptype, "attestors": _kyverno_attestors(identity)}
    if ptype == PROVENANCE_TYPE and given.source:
        condition = {
            "key": "{{ " + SOURCE_FIELD + " }}",
            "operator": "Equals",
            "value": given.source,
            "message": f"the provenance does not name {given.source} as the source",
        }
        entry["conditions"] = [{"all": [condition]}]
    return entry


def _kyverno_attestors(identity: Identity) -> list[dict[str, Any]]:
    rekor: dict[str, Any] = {"url": REKOR_URL} if identity.tlog else {"ignoreTlog": True}
    if not identity.keyless:
        # A key has no certificate, so no SCT: without this Kyverno fetches CT log keys.
        entry = {"publicKeys": _pem(identity), "rekor": rekor, "ctlog": {"ignoreSCT": True}}
        return [{"entries": [{"keys": entry}]}]
    keyless: dict[str, Any] = {"issuer": identity.issuer, **_subject(identity), "rekor": rekor}
    # Kyverno's names for cosign's --certificate-github-workflow-repository and -ref
    # (kyverno pkg/cosign: CertGithubWorkflowRepository, CertGithubWorkflowRef).
    run = {"githubWorkflowRepository": identity.repository, "githubWorkflowRef": identity.ref}
    if extensions := {k: v for k, v in run.items() if v}:
        keyless["additionalExtensions"] = extensions
    return [{"entries": [{"keyless": keyless}]}]


def sigstore(
    repository: str,
    identity: Identity,
    *,
    source_repo: str = "",
    require_vex: bool = False,
    name: str = DEFAULT_NAME,
) -> dict[str, Any]:
    """A Sigstore policy-controller ``ClusterImagePolicy`` enforcing the signature and
    attestations of every image under the ``repository`` prefix (glob ``/**``: at any
    depth, tag or digest; policy-controller's ``*`` stops at a ``/``)."""
    given = _inputs(repository, source_repo, require_vex, name)
    host = "index.docker.io" if given.host == "docker.io" else given.host  # what it matches
    attestations = []
    for ptype in given.types:
        entry: dict[str, Any] = {"name": _NAMES[ptype], "predicateType": ptype}
        if ptype == PROVENANCE_TYPE and given.source:
            check = f"input.predicate.{SOURCE_FIELD} == {json.dumps(given.source)}"
            entry["policy"] = {"type": "rego", "data": _rego(check)}
        attestations.append(entry)
    signature = {"name": _SIGNATURE, **_sigstore_authority(identity)}
    attested = {"name": _ATTESTATIONS, **_sigstore_authority(identity)}
    both = _rego(
        f'count(input.authorityMatches["{_SIGNATURE}"].signatures) > 0',
        f'input.authorityMatches["{_ATTESTATIONS}"].attestations',
    )
    return {
        "apiVersion": "policy.sigstore.dev/v1beta1",
        "kind": "ClusterImagePolicy",
        "metadata": {"name": given.name},
        "spec": {
            "mode": "enforce",
            "images": [{"glob": f"{host}/{given.path}/**"}],
            "authorities": [signature, {**attested, "attestations": attestations}],
            "policy": {"type": "rego", "data": both},
        },
    }


def _sigstore_authority(identity: Identity) -> dict[str, Any]:
    # Without ctlog policy-controller skips the transparency log of a key (a keyless
    # authority would still demand it: Identity refuses keyless without tlog).
    ctlog = {"ctlog": {"url": REKOR_URL}} if identity.tlog else {}
    if not identity.keyless:
        return {"key": {"data": _pem(identity)}, **ctlog}
    identities = [{"issuer": identity.issuer, **_subject(identity)}]
    return {"keyless": {"url": FULCIO_URL, "identities": identities}, **ctlog}


def _rego(*conditions: str) -> str:
    """A policy-controller rego policy: cosign's ``data.sigstore.isCompliant``, rego v0."""
    body = "".join(f"  {condition}\n" for condition in conditions)
    return f"package sigstore\ndefault isCompliant = false\nisCompliant {{\n{body}}}\n"


class _Dumper(yaml.SafeDumper):
    """Block scalars for multi-line text (keys, rego) and no anchors: each manifest reads
    on its own, as kubectl and people expect."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def _text(dumper: yaml.SafeDumper, text: str) -> yaml.ScalarNode:
    return dumper.represent_scalar("tag:yaml.org,2002:str", text, "|" if "\n" in text else None)


_Dumper.add_representer(str, _text)


def render(*docs: dict[str, Any]) -> str:
    """YAML of one or more manifests, each its own ``---`` document, keys in the order they
    were built (apiVersion, kind, metadata, spec): the same inputs give the same text."""
    if not docs:
        raise ConfigError("no admission policy to render")
    return yaml.dump_all(docs, Dumper=_Dumper, sort_keys=False, explicit_start=True, width=4096)
