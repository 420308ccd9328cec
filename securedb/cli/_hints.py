"""What `securedb check` says when a step fails: the guide's likely causes, and the fix.

Each hint is ``(causes, fix)``; the check picks one by step and by what went wrong.
"""

from __future__ import annotations

__all__ = ["HINTS", "Hint"]

Hint = tuple[tuple[str, ...], str]

SG = (
    "a security group that does not allow your source: the database's group should allow "
    "the port from the application tier's security group (or the SSM/bastion host's), "
    "not from a CIDR"
)
PRIVATE = (
    "the endpoint is in a private subnet with no route from here (a laptop outside the "
    "VPC): start an SSM port forward and pass --tunnel 127.0.0.1:LOCAL_PORT"
)

HINTS: dict[str, Hint] = {
    "config": ((), "correct the option the message names (flags mirror securedb's Config)"),
    "dns": (
        (
            "a typo in the endpoint name, or the instance was deleted or renamed",
            "a private endpoint looked up outside the VPC's DNS (a laptop, another VPC "
            "without the private hosted zone)",
        ),
        "use the endpoint shown by `aws rds describe-db-instances`; from outside the VPC, "
        "forward a port with SSM and pass --tunnel (the name then only needs to be right, "
        "not to resolve)",
    ),
    "tcp-refused": (
        (
            "nothing listens there: a wrong port, a stopped instance, or a port forward "
            "(SSM, SSH) that is not running",
        ),
        "check the port in the URL and that the instance is available; restart the port "
        "forward if you use --tunnel",
    ),
    "tcp-timeout": (
        (SG, PRIVATE, "a network ACL or firewall dropping the traffic"),
        "allow the database port from your application's security group (aws ec2 "
        "authorize-security-group-ingress --source-group ...), or use SSM port forwarding",
    ),
    "tls-untrusted": (
        (
            "the wrong CA bundle: the certificate is not issued by a CA in the trust store",
            "an endpoint in a region newer than the bundled RDS CA snapshot",
            "something between you and the database re-signs TLS (a corporate proxy)",
        ),
        "pass --ca-bundle with AWS's global-bundle.pem "
        "(https://truststore.pki.rds.amazonaws.com/global/global-bundle.pem), or with the "
        "rds-ca-bundle.pem `securedb ca refresh` writes; for a server of your own, "
        "--ca-bundle with its CA",
    ),
    "tls-name": (
        (
            "a certificate that does not carry the name you used: a CNAME of your own, "
            "an IP address, or localhost through a port forward",
        ),
        "connect with the RDS endpoint name the certificate carries; for a port forward "
        "keep that name in the URL and add --tunnel 127.0.0.1:LOCAL_PORT",
    ),
    "tls-expired": (
        ("the instance still uses an expired CA such as rds-ca-2019",),
        "aws rds modify-db-instance --db-instance-identifier ID "
        "--ca-certificate-identifier rds-ca-rsa2048-g1 --apply-immediately",
    ),
    "tls-none": (
        (
            "the port is not a database speaking TLS: a different service, or a forward "
            "to the wrong target",
            "a server configured without TLS (RDS always offers it)",
        ),
        "check the port and the forward's target; securedb never connects without TLS",
    ),
    "tls-other": (
        ("a TLS version or cipher the server does not accept", "a middlebox cutting TLS"),
        "make sure the server allows TLS 1.2 or newer",
    ),
    "credentials-iam": (
        (
            "no AWS credentials here (no profile, no role, an expired SSO session)",
            "no region: not in the endpoint name, AWS_REGION or the AWS config",
        ),
        "set AWS_PROFILE (and run `aws sso login`), or export AWS credentials; pass "
        "--region if the endpoint is not an RDS name",
    ),
    "credentials-secret": (
        (
            "a wrong secret name, ARN or region",
            "no secretsmanager:GetSecretValue (or kms:Decrypt) for your identity",
            "a secret that is not JSON with username and password",
        ),
        "check --secret-id and --region against `aws secretsmanager describe-secret`, and "
        "your policy",
    ),
    "credentials-password": ((), "check the user and password in the URL"),
    "login-iam": (
        (
            "IAM authentication not enabled on the instance or cluster",
            "the database user lacks the rds_iam role (PostgreSQL: GRANT rds_iam TO user) "
            "or the AWSAuthenticationPlugin (MySQL: CREATE USER ... IDENTIFIED WITH "
            "AWSAuthenticationPlugin AS 'RDS')",
            "your IAM policy lacks rds-db:connect on arn:aws:rds-db:REGION:ACCOUNT:dbuser:"
            "RESOURCE_ID/USER",
            "clock skew: the token is dated by this machine's clock and lives 15 minutes",
            "the token was signed for another name than the endpoint (use --tunnel rather "
            "than localhost in the URL)",
        ),
        "aws rds modify-db-instance --enable-iam-database-authentication --apply-immediately;"
        " grant the role or plugin; allow rds-db:connect; sync the clock (NTP)",
    ),
    "login-secret": (
        (
            "a rotation half done: the database already has the new password while the "
            "secret's AWSCURRENT still holds the old one (or the reverse)",
            "the secret's username or password does not match the database",
        ),
        "look at the rotation function's logs and the secret's AWSPENDING version; finish "
        "or cancel the rotation (aws secretsmanager rotate-secret / update-secret-version-stage)",
    ),
    "login-password": ((), "check the user and password"),
    "login-other": (
        (
            "the server refused the connection after TLS: no pg_hba.conf entry, too many "
            "connections, or the database does not exist",
        ),
        "read the server's message; check the database name and the user's grants",
    ),
    "query": (
        ("the user may not run queries on this database",),
        "check the user's grants on the database",
    ),
}
