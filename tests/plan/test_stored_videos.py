"""The plan's "is the finished video still there?" for videos kept in an object store: one listing
of the prefix (a page per 1,000 objects), never a request per row, sizes compared.

Covers: pipeline/plan/actions.py
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from pipeline.plan.actions import _file_present


def test_one_listing_decides_every_stored_row(s3):
    bucket = s3.bucket()
    client = s3.client()
    names = [f"k{i:05d}" for i in range(1_050)]
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda n: client.put_object(Bucket=bucket, Key=f"videos/{n}.mp4", Body=b"v" * 7), names))
    paths = [f"s3://{bucket}/videos/{n}.mp4" for n in names] + [f"s3://{bucket}/videos/gone.mp4"]
    sizes = [7] * len(names) + [7]
    sizes[3] = 8  # the ledger says another size: not our video, fetched again
    before = len(s3.requests(bucket))

    present = _file_present(paths, sizes, [False] * len(paths))

    assert present == [i != 3 for i in range(len(names))] + [False]
    asked = s3.requests(bucket)[before:]
    assert len(asked) == 2 and all("list-type=2" in line for line in asked), asked  # 1,050 objects: two pages
    # A row without a recorded size was never "there": no guess.
    assert _file_present(paths[:1], [None], [False]) == [False]
