"""A program distributed with a data file: each job runs the program with its own arguments in a
folder holding the data file, and the program's output comes back as the job's stdout."""

import os
import sys
import tempfile
import textwrap

if __name__ == "__main__":
    import rdispy as dispy

    folder = tempfile.mkdtemp()
    data = os.path.join(folder, "numbers.txt")
    with open(data, "w") as f:
        f.write("\n".join(str(i) for i in range(1, 101)))
    program = os.path.join(folder, "count.py")
    with open(program, "w") as f:
        f.write(
            textwrap.dedent("""
            import sys
            step = int(sys.argv[1])
            numbers = [int(line) for line in open("numbers.txt")]
            print(sum(numbers[::step]))
        """)
        )
    cluster = dispy.JobCluster(program, depends=[data], redis_url=os.environ.get("RDISPY_REDIS"))
    jobs = [cluster.submit(step) for step in (1, 2, 10)]
    for job in jobs:
        exit_code = job()
        print("step %s: exit %s, sum %s" % (job.args[0], exit_code, job.stdout.decode().strip()))
    cluster.close()
    sys.exit(0)
