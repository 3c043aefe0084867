#!/usr/bin/env python3
"""The floor for bench/issue12.sh: writes what a cold mirror of a
distribution store writes to a referrers-API target, from local files, with
no check and no read over HTTP: every blob once (POST + monolithic PUT) into
the first repository that has it, mounted into every other one, then every
manifest once (image manifests, then indexes; tagged roots by tag only).
Fallback indexes (sha256-<hex> tags) are left out: an API target gets none.
PAR requests at a time over keep-alive connections. Fails unless every
request is answered as expected.

Usage: floor_upload.py HOST:PORT STORE PREFIX PAR
  STORE: distribution's rootdirectory (.../docker/registry/v2 below it)
  PREFIX: the repositories to copy (e.g. bench/)
"""
import http.client
import json
import os
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlsplit

BLOCK = 1 << 20
host, store, prefix, par = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
v2 = os.path.join(store, "docker/registry/v2")
local = threading.local()


def connection():
    if not hasattr(local, "conn"):
        local.conn = http.client.HTTPConnection(host, blocksize=BLOCK)
    return local.conn


def request(method, path, body=None, headers=None, want=(201,)):
    conn = connection()
    conn.request(method, path, body=body, headers=headers or {})
    resp = conn.getresponse()
    resp.read()
    if resp.status not in want:
        raise SystemExit(f"{method} {path}: {resp.status}")
    return resp


def blob_file(hex_digest):
    return os.path.join(v2, "blobs/sha256", hex_digest[:2], hex_digest, "data")


def link(path):
    with open(path) as f:
        return f.read().strip().split(":", 1)[1]


def upload(repo, hex_digest):
    resp = request("POST", f"/v2/{repo}/blobs/uploads/",
                   headers={"Content-Length": "0"}, want=(202,))
    location = urlsplit(resp.getheader("Location"))
    target = location.path + "?" + (location.query + "&" if location.query else "")
    target += f"digest=sha256:{hex_digest}"
    path = blob_file(hex_digest)
    with open(path, "rb") as body:
        request("PUT", target, body=body, headers={
            "Content-Length": str(os.path.getsize(path)),
            "Content-Type": "application/octet-stream"})


def mount(repo, hex_digest, source):
    request("POST", f"/v2/{repo}/blobs/uploads/?mount=sha256:{hex_digest}&from={source}",
            headers={"Content-Length": "0"})


def put_manifest(repo, reference, hex_digest):
    with open(blob_file(hex_digest), "rb") as f:
        body = f.read()
    media_type = json.loads(body).get("mediaType", "application/vnd.oci.image.manifest.v1+json")
    request("PUT", f"/v2/{repo}/manifests/{reference}", body=body,
            headers={"Content-Type": media_type, "Content-Length": str(len(body))})


# repository -> blobs, manifests, tags (name -> digest); from the store.
repos = {}
base = os.path.join(v2, "repositories")
for dirpath, dirnames, _ in os.walk(base):
    if "_manifests" not in dirnames:
        continue
    name = os.path.relpath(dirpath, base)
    if not name.startswith(prefix):
        continue
    layers = os.path.join(dirpath, "_layers/sha256")
    revisions = os.path.join(dirpath, "_manifests/revisions/sha256")
    tags_dir = os.path.join(dirpath, "_manifests/tags")
    tags = {t: link(os.path.join(tags_dir, t, "current/link")) for t in os.listdir(tags_dir)}
    repos[name] = (
        sorted(os.listdir(layers)) if os.path.isdir(layers) else [],
        sorted(os.listdir(revisions)),
        tags,
    )

owner, uploads, mounts = {}, [], []
for name, (blobs, _, _) in sorted(repos.items()):
    for b in blobs:
        if b in owner:
            mounts.append((name, b, owner[b]))
        else:
            owner[b] = name
            uploads.append((name, b))

images, indexes = [], []
for name, (_, manifests, tags) in sorted(repos.items()):
    fallback = {d for t, d in tags.items() if t.startswith("sha256-")}
    tagged = {d: t for t, d in tags.items() if not t.startswith("sha256-")}
    for d in manifests:
        if d in fallback:
            continue
        with open(blob_file(d), "rb") as f:
            is_index = "manifests" in json.loads(f.read())
        (indexes if is_index else images).append((name, tagged.get(d, f"sha256:{d}"), d))

with ThreadPoolExecutor(max_workers=par) as pool:
    list(pool.map(lambda a: upload(*a), uploads))
    list(pool.map(lambda a: mount(*a), mounts))
    list(pool.map(lambda a: put_manifest(*a), images))
    list(pool.map(lambda a: put_manifest(*a), indexes))
print(f"{len(uploads)} uploads, {len(mounts)} mounts, {len(images) + len(indexes)} manifests")
