"""The trivial job every Python queue runs: it returns its argument (RQ imports it as `jobs.echo`)."""


def echo(value):
    return value


async def arq_echo(ctx, value):
    """arq passes its context dict first."""
    return value


async def bullmq_echo(job, token):
    """BullMQ passes the job (its `data` is the JSON the producer added) and the lock token."""
    return job.data
