"""cosign: sign and verify by digest, key pair or keyless, same code path."""

from __future__ import annotations

import base64
import hashlib
import json
import stat
import tempfile
import threading
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from dcforge.core import dsse
from dcforge.core.errors import ToolError
from dcforge.core.release import artifact_tag
from dcforge.infra import keyfile
from dcforge.infra.retry import transient
from dcforge.infra.runner import Result, Runner
from dcforge.infra.tools.registry import Registry


@dataclass(frozen=True)
class Signer:
    """Key mode: ``key`` is a path or KMS URI and the password stays in the environment.

    Keyless mode (``key`` empty): cosign gets a short-lived certificate from Fulcio for an
    OIDC token (the ambient GitHub Actions token, or ``token_file``) and uploads to Rekor
    unless ``tlog`` is off; ``identity`` and ``issuer`` are what ``verify`` then requires.
    ``fulcio_url``, ``root_file`` and ``ct_log_key_file`` name a Sigstore other than the
    public one (empty: cosign's defaults, the public Fulcio and its TUF-distributed root).
    Every signature and attestation is then a cosign run: nothing is signed in-process.
    """

    key: str = ""
    public_key: str = ""
    identity: str = ""
    repository: str = ""  # the run's repository (owner/name): a reusable workflow's callers
    source_ref: str = ""  # the run's git ref (refs/heads/main) all sign as one identity
    issuer: str = "https://token.actions.githubusercontent.com"
    tlog: bool = False  # key mode is offline by default; keyless uses Rekor unless told not
    fulcio_url: str = ""  # cosign --fulcio-url
    token_file: str = ""  # cosign --identity-token (a path: cosign reads the token from it)
    root_file: str = ""  # SIGSTORE_ROOT_FILE
    ct_log_key_file: str = ""  # SIGSTORE_CT_LOG_PUBLIC_KEY_FILE

    @property
    def keyless(self) -> bool:
        return not (self.key or self.public_key)

    def signs_in_process(self) -> bool:
        """A key file and no transparency log: signatures and attestations are signed
        here with the key decrypted once (``attach_signature``, ``attach_attestations``).
        A KMS key, keyless signing or Rekor uploads: cosign signs each one."""
        remote = "://" in self.key or self.key.startswith("pkcs11:")
        return bool(self.key) and not self.tlog and not remote

    def env(self) -> dict[str, str]:
        """cosign's own variables for a Sigstore other than the public one (every run)."""
        named = {
            "SIGSTORE_ROOT_FILE": self.root_file,
            "SIGSTORE_CT_LOG_PUBLIC_KEY_FILE": self.ct_log_key_file,
        }
        return {name: value for name, value in named.items() if value}

    def sign_flags(self) -> list[str]:
        tlog = [f"--tlog-upload={'true' if self.tlog else 'false'}"]
        if self.key:
            return ["--key", self.key, *tlog]
        fulcio = ["--fulcio-url", self.fulcio_url] if self.fulcio_url else []
        token = ["--identity-token", self.token_file] if self.token_file else []
        return [*fulcio, *token, *tlog]

    def verify_flags(self) -> list[str]:
        if self.key or self.public_key:
            flags = ["--key", self.public_key or self.key]
            return flags if self.tlog else [*flags, "--insecure-ignore-tlog"]
        if not self.identity or not self.issuer:
            raise ToolError(
                "keyless verification needs a certificate identity and issuer "
                "(DCFORGE_COSIGN_IDENTITY, DCFORGE_COSIGN_ISSUER)"
            )
        flags = ["--certificate-identity", self.identity, "--certificate-oidc-issuer", self.issuer]
        if self.repository:
            flags += ["--certificate-github-workflow-repository", self.repository]
        if self.source_ref:
            flags += ["--certificate-github-workflow-ref", self.source_ref]
        return flags if self.tlog else [*flags, "--insecure-ignore-tlog"]

    def policy(self) -> dict[str, str | bool] | None:
        """What ``verify`` accepts, by content: the public key (the sha256 of its SPKI,
        whatever file holds it, or of the key file's bytes), or the keyless identity,
        issuer, workflow repository and ref and the trust root; and whether the
        transparency log is required. Two signers with the same policy accept the same
        signatures. None: a key by reference (KMS, ``env://``, a URL), whose content can
        change under the same name — no policy can be named for it."""
        if not self.keyless:
            key = _key_id(self.public_key or self.key)
            return {"key": key, "tlog": self.tlog} if key else None
        return {
            "identity": self.identity,
            "issuer": self.issuer,
            "repository": self.repository,
            "ref": self.source_ref,
            "root": _file_id(self.root_file),
            "ct_log_key": _file_id(self.ct_log_key_file),
            "tlog": self.tlog,
        }

    def describe(self) -> str:
        """What a signature must verify with, for a message."""
        if not self.keyless:
            return f"the public key {self.public_key or self.key}"
        run = " ".join(filter(None, (self.repository, self.source_ref)))
        of = f", a run of {run}" if run else ""
        return f"the identity {self.identity} (issuer {self.issuer}{of})"


def _key_id(key: str) -> str:
    """A verification key file by content: its SPKI's sha256 (a PEM public key), else
    the file's sha256; "" for a reference cosign resolves itself (KMS, env://, a URL)."""
    if ":" in key.split("/", 1)[0]:  # scheme:… (a path has no colon before its first /)
        return ""
    spki = keyfile.public_key_digest(Path(key))
    return f"spki:sha256:{spki}" if spki else _file_id(key)


def _file_id(path: str) -> str:
    """A regular file by content ("" for none; "unreadable:<path>" for anything else: a
    pipe is not read here, to be read again by cosign)."""
    if not path:
        return ""
    try:
        if not stat.S_ISREG(Path(path).stat().st_mode):
            return f"unreadable:{path}"
        return "sha256:" + hashlib.sha256(Path(path).read_bytes()).hexdigest()
    except OSError:
        return f"unreadable:{path}"


# What else changes what cosign accepts, from its environment (sigstore/cosign
# pkg/cosign/env/env.go): COSIGN_REPOSITORY (where signatures are read), the SIGSTORE_*
# trust material (Rekor, CT log, TSA keys, the root) and the TUF_* root and mirror. Not what
# only signing reads (the OIDC token and its flow) and never a password or key.
POLICY_ENV = frozenset({"COSIGN_REPOSITORY", "COSIGN_EXPERIMENTAL"})
POLICY_ENV_PREFIXES = ("SIGSTORE_", "TUF_")
POLICY_ENV_SKIPPED = ("SIGSTORE_ID_TOKEN", "SIGSTORE_OIDC_")


def env_policy(env: Mapping[str, str]) -> dict[str, str]:
    """The part of cosign's environment that changes what it accepts: each variable's
    value, a file it names by the file's content."""
    out = {}
    for name in sorted(env):
        wanted = name in POLICY_ENV or name.startswith(POLICY_ENV_PREFIXES)
        if wanted and not name.startswith(POLICY_ENV_SKIPPED):
            value = env[name]
            named = Path(value) if value.startswith("/") else None
            out[name] = _file_id(value) if named is not None and named.exists() else value
    return out


# Images per cosign run when several are signed or verified in one: a run decrypts the
# key once (signing) or starts once (verifying), and its output (every SBOM, when
# attestations are verified) and its time stay bounded.
SIGN_BATCH = 128
VERIFY_BATCH = 64
ATTESTATION_BATCH = 16


def _run(runner: Runner, argv: list[str | Path], **kwargs: object) -> Result:
    """cosign talks to the registry: transient registry failures are retried."""
    return transient(lambda: runner.run(argv, **kwargs))  # type: ignore[arg-type]


def _chunks(items: Sequence[str], size: int) -> list[list[str]]:
    return [list(items[i : i + size]) for i in range(0, len(items), size)]


def _spread(items: Sequence[str], runs: int, most: int, least: int = 4) -> list[list[str]]:
    """``items`` cut for cosign runs side by side: at most ``runs`` chunks unless chunks of
    ``most`` need more, each of at least ``least`` items (a run's start-up and, signing, its
    key decryption are paid once per chunk)."""
    most, least = max(1, most), max(1, least)
    count = max(1, min(runs, len(items) // least), -(-len(items) // most))
    return _chunks(items, -(-len(items) // count)) if items else []


def _side_by_side(job: Callable[[list[str]], object], chunks: list[list[str]]) -> list[object]:
    """``job`` of each chunk, in threads side by side (the first error raised)."""
    if len(chunks) <= 1:
        return [job(chunk) for chunk in chunks]
    with ThreadPoolExecutor(len(chunks)) as pool:
        return list(pool.map(job, chunks))


def _by_transport(registry: Registry, refs: Sequence[str]) -> list[tuple[bool, list[str]]]:
    """``refs`` split into those on plain-HTTP registries and those on TLS ones (each
    cosign run takes one ``--allow-http-registry`` setting); empty groups left out."""
    plain = [bool(registry.plain(ref)) for ref in refs]
    groups = [
        (kind, [r for r, p in zip(refs, plain, strict=True) if p == kind]) for kind in (True, False)
    ]
    return [(kind, group) for kind, group in groups if group]


def _http(plain_http: bool) -> list[str]:
    return ["--allow-http-registry"] if plain_http else []


def generate_key_pair(runner: Runner, directory: Path, env: Mapping[str, str]) -> tuple[Path, Path]:
    """``cosign generate-key-pair`` in ``directory`` (password from COSIGN_PASSWORD in env)."""
    directory.mkdir(parents=True, exist_ok=True)
    runner.run(["cosign", "generate-key-pair"], cwd=directory, env=env, timeout=120)
    return directory / "cosign.key", directory / "cosign.pub"


def sign(
    runner: Runner,
    signer: Signer,
    refs_at_digest: str | Sequence[str],
    *,
    plain_http: bool,
    env: Mapping[str, str] | None = None,
    runs: int = 1,
) -> None:
    """``cosign sign`` of one image or of several, in up to ``runs`` cosign runs side by
    side (each reads and decrypts the key once: with a key pair, that is most of a
    signature's cost; each then signs its images one after another)."""
    refs = [refs_at_digest] if isinstance(refs_at_digest, str) else list(refs_at_digest)
    for ref in refs:
        if "@sha256:" not in ref:
            raise ToolError(f"refusing to sign {ref}: sign by digest, never by tag")

    def run(chunk: list[str]) -> object:
        argv = ["cosign", "sign", "--yes", *signer.sign_flags(), *_http(plain_http), *chunk]
        full = {**signer.env(), **(env or {})}
        return _run(runner, argv, env=full, timeout=300 + 10 * len(chunk))  # type: ignore[arg-type]

    _side_by_side(run, _spread(refs, runs, SIGN_BATCH))


def attest(
    runner: Runner,
    signer: Signer,
    ref_at_digest: str,
    predicate: Path,
    predicate_type: str,
    *,
    plain_http: bool,
    env: Mapping[str, str] | None = None,
) -> None:
    if "@sha256:" not in ref_at_digest:
        raise ToolError(f"refusing to attest {ref_at_digest}: attest by digest, never by tag")
    _run(
        runner,
        [
            "cosign",
            "attest",
            "--yes",
            *signer.sign_flags(),
            *_http(plain_http),
            "--type",
            predicate_type,
            "--predicate",
            predicate,
            ref_at_digest,
        ],
        env={**signer.env(), **(env or {})},
        timeout=300,
    )


def attach_attestations(
    runner: Runner,
    key: keyfile.EcKey,
    ref_at_digest: str,
    predicates: Sequence[tuple[Path, str]],
    *,
    plain_http: bool,
) -> None:
    """Each ``(predicate file, cosign --type)`` made into the statement ``cosign attest``
    would make, signed with ``key`` here, and all attached to the image in one ``cosign
    attach attestation`` run (the same ``.att`` layers; no key decrypted per attestation)."""
    repository, at, digest = ref_at_digest.partition("@")
    if not at or not digest.startswith("sha256:"):
        raise ToolError(f"refusing to attest {ref_at_digest}: attest by digest, never by tag")
    statements = [
        dsse.statement(repository, digest, ptype, dsse.read_predicate(predicate))
        for predicate, ptype in predicates
    ]
    try:
        with tempfile.TemporaryDirectory(prefix="dcforge-attest-") as tmp:
            argv: list[str | Path] = ["cosign", "attach", "attestation", *_http(plain_http)]
            for i, payload in enumerate(statements):
                envelope = Path(tmp) / f"{i}.intoto.json"
                envelope.write_text(json.dumps(dsse.envelope(payload, key.sign)))
                argv += ["--attestation", envelope]
            _run(runner, [*argv, ref_at_digest], timeout=300)
    except OSError as err:  # the temporary directory (a full /tmp, say)
        raise ToolError(f"cannot write the attestations of {ref_at_digest}: {err}") from None


def attach_signature(
    runner: Runner, key: keyfile.EcKey, ref_at_digest: str, *, plain_http: bool
) -> None:
    """The payload ``cosign sign`` would sign for the image, signed with ``key`` here and
    attached with ``cosign attach signature`` (the same ``.sig`` layer; no key decrypted)."""
    repository, at, digest = ref_at_digest.partition("@")
    if not at:
        raise ToolError(f"refusing to sign {ref_at_digest}: sign by digest, never by tag")
    payload = dsse.signature_payload(repository, digest)
    try:
        with tempfile.TemporaryDirectory(prefix="dcforge-sign-") as tmp:
            files = Path(tmp) / "payload.json", Path(tmp) / "signature"
            files[0].write_bytes(payload)
            files[1].write_text(base64.b64encode(key.sign(payload)).decode())
            argv: list[str | Path] = ["cosign", "attach", "signature", *_http(plain_http)]
            argv += ["--payload", files[0], "--signature", files[1], ref_at_digest]
            _run(runner, argv, timeout=300)
    except OSError as err:  # the temporary directory (a full /tmp, say)
        raise ToolError(f"cannot write the signature of {ref_at_digest}: {err}") from None


def verify(
    runner: Runner, signer: Signer, refs_at_digest: str | Sequence[str], *, plain_http: bool
) -> str:
    """``cosign verify`` of one image or several; returns its JSON output. Raises ToolError
    when one does not verify."""
    return _verify_run(runner, signer, ["verify"], refs_at_digest, plain_http)


def _verify_run(
    runner: Runner,
    signer: Signer,
    command: list[str],
    refs_at_digest: str | Sequence[str],
    plain_http: bool,
) -> str:
    """``cosign <command> --output json`` of the images: retried on a transient failure
    for one image; for several not (the caller checks them one by one when it fails)."""
    refs = [refs_at_digest] if isinstance(refs_at_digest, str) else list(refs_at_digest)
    subcommand, *options = command
    argv: list[str | Path] = [
        "cosign",
        subcommand,
        "--output",
        "json",
        *options,
        *signer.verify_flags(),
        *_http(plain_http),
        *refs,
    ]
    timeout, env = 300 + 10 * len(refs), signer.env()
    if len(refs) > 1:
        return runner.run(argv, env=env, timeout=timeout, mutates=False).stdout
    return _run(runner, argv, env=env, timeout=timeout, mutates=False).stdout


def verify_attestation(
    runner: Runner,
    signer: Signer,
    refs_at_digest: str | Sequence[str],
    predicate_type: str,
    *,
    plain_http: bool,
) -> str:
    command = ["verify-attestation", "--type", predicate_type]
    return _verify_run(runner, signer, command, refs_at_digest, plain_http)


@dataclass(frozen=True)
class Cosign:
    """cosign bound to one signer and the registry client's view of plain-HTTP hosts."""

    runner: Runner
    signer: Signer
    registry: Registry
    # what cosign needs from the environment (COSIGN_PASSWORD): never in a repr
    env: Mapping[str, str] = field(repr=False)
    # The key file's key, decrypted on first use (attestations signed in-process).
    _key: dict[str, keyfile.EcKey | None] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )
    _key_lock: threading.Lock = field(
        default_factory=threading.Lock, init=False, repr=False, compare=False
    )
    # True once check_key found the key file's key to be the public key's pair.
    _paired: list[bool] = field(default_factory=list, init=False, repr=False, compare=False)

    def signs_in_process(self) -> bool:
        return self.signer.signs_in_process()

    def policy(self) -> dict[str, object] | None:
        """What cosign accepts here: the signer's policy and the variables of cosign's
        environment that change it (None: a key by reference, see Signer.policy)."""
        found = self.signer.policy()
        if found is None:
            return None
        return {**found, "env": env_policy({**self.runner.env, **self.signer.env()})}

    def check_key(self, decrypted: tuple[str, keyfile.EcKey | None] | None = None) -> None:
        """Decrypt the key file now (ToolError naming it when the password does not), and
        check it is the public key's pair (ToolError when the public key file is another
        key's): a publish says so before it pushes anything. ``decrypted``: (key file, its
        key) already read (publish reads it while its checks run), taken only when it is
        this signer's key file."""
        if not self.signs_in_process():
            return
        with self._key_lock:
            if decrypted is not None and decrypted[0] == self.signer.key:
                self._key.setdefault("key", decrypted[1])
        key = self._ec_key()
        public = self.signer.public_key
        paired = key.is_pair_of(Path(public)) if key is not None and public else None
        if paired is False:
            raise ToolError(
                f"the cosign key {self.signer.key} is not the private key of the public key "
                f"{public}: nothing it signs would verify — set COSIGN_KEY and "
                "COSIGN_PUBLIC_KEY to one key pair"
            )
        self._paired[:] = [paired is True]

    def signs_here(self) -> bool:
        """Signatures are made here (a key file of an ECDSA key: ``signs_in_process``, and
        the key is one this module signs with); else each is a cosign run."""
        return self.signs_in_process() and self._ec_key() is not None

    def sign_checked(self, ref_at_digest: str) -> str:
        """Sign one artifact, then check its signature holds: "" when it does, else what is
        wrong. Signed here with a key ``check_key`` found to be the public key's pair, it
        verifies by construction: the registry need only serve the new signature manifest
        (its ``.sig`` read back, changed by this signing; no cosign run). Otherwise cosign
        verifies it."""
        if self._paired != [True] or not self.signs_here():
            self.sign(ref_at_digest)
            if self.verified(ref_at_digest):
                return ""
            if self.signer.keyless:
                return (
                    f"its signature does not verify as {self.signer.describe()}: cosign "
                    "signed with another identity's token (DCFORGE_COSIGN_IDENTITY and "
                    "DCFORGE_COSIGN_ISSUER must name the workflow that signs) or another "
                    "Sigstore's certificate"
                )
            return (
                "its signature does not verify with the public key (COSIGN_KEY and "
                "COSIGN_PUBLIC_KEY not a pair?)"
            )
        repository, _, digest = ref_at_digest.partition("@")
        sig = f"{repository}:{artifact_tag(digest, 'sig')}"
        before = self.registry.digest_or_none(sig)
        self.sign(ref_at_digest)
        after = self.registry.digest_or_none(sig)
        if after is None or after == before:
            return f"the registry does not serve the signature just attached ({sig})"
        return ""

    def _ec_key(self) -> keyfile.EcKey | None:
        with self._key_lock:
            if "key" not in self._key:
                password = self.env.get("COSIGN_PASSWORD", "")
                self._key["key"] = keyfile.load(Path(self.signer.key), password)
            return self._key["key"]

    def attest_all(self, ref_at_digest: str, predicates: Sequence[tuple[Path, str]]) -> None:
        """Attest one image with each ``(predicate file, cosign --type)``: signed here and
        attached in one cosign run when ``signs_in_process`` and the key is ECDSA (what
        ``generate-key-pair`` makes), else one ``cosign attest`` each."""
        key = self._ec_key() if self.signs_in_process() else None
        if key is None:
            for predicate, ptype in predicates:
                self.attest(ref_at_digest, predicate, ptype)
        elif predicates:
            plain = self.registry.plain(ref_at_digest)
            attach_attestations(self.runner, key, ref_at_digest, predicates, plain_http=plain)

    def sign(self, ref_at_digest: str) -> None:
        self.sign_all([ref_at_digest])

    def sign_all(self, refs_at_digest: Sequence[str], runs: int = 1) -> None:
        """Sign every image: with a key file signed here (``signs_in_process``), each
        attached by its own ``cosign attach signature``, ``runs`` side by side; otherwise
        in up to ``runs`` ``cosign sign`` runs side by side per kind of registry."""
        key = self._ec_key() if self.signs_in_process() else None
        if key is not None:
            for ref in refs_at_digest:
                if "@sha256:" not in ref:
                    raise ToolError(f"refusing to sign {ref}: sign by digest, never by tag")

            def attach(chunk: list[str]) -> None:
                for ref in chunk:
                    try:
                        attach_signature(self.runner, key, ref, plain_http=self.registry.plain(ref))
                    except ToolError as err:
                        raise ToolError(f"signing {ref}: {err}", details=err.details) from None

            once = list(dict.fromkeys(refs_at_digest))  # two attaches to one .sig would race
            _side_by_side(attach, _spread(once, runs, SIGN_BATCH, least=1))
            return
        for plain, refs in _by_transport(self.registry, refs_at_digest):
            sign(self.runner, self.signer, refs, plain_http=plain, env=self.env, runs=runs)

    def verify_attestations(self, refs_at_digest: Sequence[str], predicate_type: str) -> str:
        """One ``cosign verify-attestation`` of several images (all on one kind of
        registry; at most ATTESTATION_BATCH), not retried; cosign's JSON lines, image
        after image. Raises ToolError when one of them has no attestation of the type
        that verifies."""
        if len(refs_at_digest) > ATTESTATION_BATCH:
            raise ToolError(f"verify_attestations: more than {ATTESTATION_BATCH} images")
        plain = {self.registry.plain(ref) for ref in refs_at_digest}
        if len(plain) != 1:
            raise ToolError("verify_attestations: the images must all be on plain or all on TLS")
        return verify_attestation(
            self.runner, self.signer, list(refs_at_digest), predicate_type, plain_http=plain.pop()
        )

    def verify_all(self, refs_at_digest: Sequence[str], runs: int = 1) -> bool:
        """``cosign verify`` of several images, in up to ``runs`` runs side by side: True
        when every one's signature verifies (cosign checks each signed payload names its
        image's digest); False says only that one of them does not."""

        def verified(plain: bool) -> Callable[[list[str]], object]:
            def run(chunk: list[str]) -> bool:
                try:  # not retried: a failure sends the caller to check them one by one
                    verify(self.runner, self.signer, chunk, plain_http=plain)
                except ToolError:
                    return False
                return True

            return run

        return all(
            ok
            for plain, refs in _by_transport(self.registry, refs_at_digest)
            for ok in _side_by_side(verified(plain), _spread(refs, runs, VERIFY_BATCH))
        )

    def attest(self, ref_at_digest: str, predicate: Path, predicate_type: str) -> None:
        attest(
            self.runner,
            self.signer,
            ref_at_digest,
            predicate,
            predicate_type,
            plain_http=self.registry.plain(ref_at_digest),
            env=self.env,
        )

    def verify(self, ref_at_digest: str) -> str:
        return verify(
            self.runner, self.signer, ref_at_digest, plain_http=self.registry.plain(ref_at_digest)
        )

    def verify_attestation(self, ref_at_digest: str, predicate_type: str) -> str:
        return verify_attestation(
            self.runner,
            self.signer,
            ref_at_digest,
            predicate_type,
            plain_http=self.registry.plain(ref_at_digest),
        )

    def verified(self, ref_at_digest: str) -> bool:
        try:
            self.verify(ref_at_digest)
        except ToolError:
            return False
        return True
