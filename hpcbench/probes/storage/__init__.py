"""storage: fio job profiles on each local mount (IOPS, bandwidth, completion latency).

probe.py: the probe; jobs.py: fio's argv per profile and running it; fio.py: the pure parser
of fio's JSON; fs.py: the test folder's safety rules, creation and cleanup.
"""
