"""Locust users for bench_gateway.py: one app reading a user's row, at a steady rate.

TARGET=gateway: GET /v1/users/{u}/recommendations?n=10 with an API key (HTTPS).
TARGET=gorse:   GET /api/recommend/{u}?n=10 with Gorse's key (what an app would call today).
USERS_PREFIX / USERS: the user ids read (uniformly). RATE_PER_USER: requests/s per locust user.
"""

from __future__ import annotations

import os
import random

from locust import constant_throughput, task
from locust.contrib.fasthttp import FastHttpUser

TARGET = os.environ.get("TARGET", "gateway")
KEY = os.environ["BENCH_KEY"]
PREFIX = os.environ.get("USERS_PREFIX", "bu")
USERS = int(os.environ.get("USERS", "60"))


class App(FastHttpUser):
    wait_time = constant_throughput(float(os.environ.get("RATE_PER_USER", "10")))
    insecure = True  # the local stack's own CA; the gateway's TLS is still negotiated

    @task
    def row(self) -> None:
        user = f"{PREFIX}{random.randrange(USERS)}"
        if TARGET == "gateway":
            self.client.get(f"/v1/users/{user}/recommendations?n=10", headers={"X-API-Key": KEY}, name="row")
        else:
            self.client.get(f"/api/recommend/{user}?n=10", headers={"X-API-Key": KEY}, name="row")
