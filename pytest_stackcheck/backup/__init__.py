"""Backup gates: run the backup job, check its archives, restore and compare.

The job is a shell script (the shipped ``fixtures/backup/pg-backup.sh`` or the
operator's own, named by ``backup.script``), and every check judges the
archives it writes, so the gates test the deployment's real backup policy.
"""
