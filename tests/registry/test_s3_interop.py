"""Zoll's own S3 client (registry/storage/s3_client.py, hand-written SigV4) against the
reference one: what Zoll stores — a multipart upload streamed part by part included —
boto3 reads as the same object, and what another tool put with boto3 Zoll reads. boto3
is a test dependency only; the service has one S3 client."""

from __future__ import annotations

import asyncio
import hashlib
import os
from typing import Any

import boto3

from registry.config import S3Config
from registry.oci.digest import Digest
from registry.storage.budget import ByteBudget
from registry.storage.s3 import S3Driver
from tests.support.servers import S3Server

MiB = 1024 * 1024


def _boto(s3: S3Server) -> Any:
    return boto3.client(
        "s3",
        endpoint_url=s3.endpoint,
        aws_access_key_id=s3.access_key,
        aws_secret_access_key=s3.secret_key,
        region_name="us-east-1",
    )


async def test_what_zoll_stores_boto3_reads_and_the_other_way(s3_server: S3Server) -> None:
    config = S3Config(**s3_server.settings())
    driver = S3Driver(config, ByteBudget(64 * MiB))
    await driver.start()
    boto = _boto(s3_server)
    try:
        data = os.urandom(12 * MiB + 123)  # two streamed parts and a buffered tail
        writer = await driver.resume_upload("interop", {}, 0)
        writer.expect(len(data))
        for start in range(0, len(data), MiB):
            await writer.write([data[start : start + MiB]])
        key = await writer.commit(Digest.of(data))

        head = await asyncio.to_thread(boto.head_object, Bucket=config.bucket, Key=driver.key(key))
        assert head["ContentLength"] == len(data)
        assert head["ETag"].strip('"').endswith("-3"), head["ETag"]  # one multipart object
        body = await asyncio.to_thread(
            lambda: boto.get_object(Bucket=config.bucket, Key=driver.key(key))["Body"].read()
        )
        assert hashlib.sha256(body).digest() == hashlib.sha256(data).digest()

        theirs = os.urandom(3 * MiB)
        await asyncio.to_thread(
            boto.put_object, Bucket=config.bucket, Key=driver.key("imported/x"), Body=theirs
        )
        assert await driver.stat("imported/x") == len(theirs)
        assert b"".join([c async for c in driver.read("imported/x")]) == theirs
    finally:
        await driver.close()
