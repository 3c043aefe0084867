#!/usr/bin/env python3
"""The raw-transfer limit for bench/mirror.sh: uploads files as blobs to a
registry, PAR at a time, each with POST + monolithic PUT (the most portable
upload; distribution 2.8 ignores a single POST with ?digest= and its body),
over one keep-alive connection per worker. Fails unless every upload is
answered 201.

Usage: raw_upload.py HOST:PORT REPO PAR FILE_LIST
"""
import http.client
import os
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlsplit

BLOCK = 1 << 20
host, repo, par, listing = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
local = threading.local()


def connection():
    if not hasattr(local, "conn"):
        local.conn = http.client.HTTPConnection(host, blocksize=BLOCK)
    return local.conn


def request(method, path, body=None, headers=None):
    conn = connection()
    conn.request(method, path, body=body, headers=headers or {})
    resp = conn.getresponse()
    resp.read()
    return resp


def upload(path):
    # The digest is the file's name in distribution's storage
    # (.../sha256/<xx>/<hex>/data); hashing again would measure Python.
    hex_digest = os.path.basename(os.path.dirname(path))
    resp = request("POST", f"/v2/{repo}/blobs/uploads/", headers={"Content-Length": "0"})
    if resp.status != 202:
        raise SystemExit(f"POST {path}: {resp.status}")
    location = urlsplit(resp.getheader("Location"))
    target = location.path + "?" + (location.query + "&" if location.query else "")
    target += f"digest=sha256:{hex_digest}"
    size = os.path.getsize(path)
    with open(path, "rb") as body:
        resp = request("PUT", target, body=body, headers={
            "Content-Length": str(size), "Content-Type": "application/octet-stream"})
    if resp.status != 201:
        raise SystemExit(f"PUT {path}: {resp.status}")


with open(listing) as f:
    files = [line.strip() for line in f if line.strip()]
with ThreadPoolExecutor(max_workers=par) as pool:
    list(pool.map(upload, files))
