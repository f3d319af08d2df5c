"""Deployment: the Lambda artifacts, the CloudFormation merge template, its validation, deploy and destroy."""
