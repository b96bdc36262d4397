using Amazon.Runtime;
using Amazon.SQS;

namespace Bus.Sqs.Internal;

/// <summary>Turns SDK exceptions into <see cref="BusException"/>s with a reason (the SDK never echoes the secret key).</summary>
internal static class SqsErrors
{
    public static BusException Wrap(Exception ex, string operation, string? topic)
    {
        if (ex is BusException bus)
        {
            return bus;
        }

        var where = topic is null ? "" : $" on topic '{topic}'";
        var (reason, transient) = ex switch
        {
            AmazonServiceException { StatusCode: System.Net.HttpStatusCode.Forbidden or System.Net.HttpStatusCode.Unauthorized } => (BusFailureReason.Unauthorized, false),
            AmazonServiceException { ErrorCode: "InvalidClientTokenId" or "SignatureDoesNotMatch" or "AccessDenied" or "AccessDeniedException" or "UnrecognizedClientException" } => (BusFailureReason.Unauthorized, false),
            AmazonSQSException { ErrorCode: "KmsThrottled" or "RequestThrottled" or "ThrottlingException" } => (BusFailureReason.BrokerError, true),
            AmazonServiceException { StatusCode: >= System.Net.HttpStatusCode.InternalServerError } => (BusFailureReason.BrokerError, true),
            AmazonServiceException => (BusFailureReason.BrokerError, false),
            HttpRequestException or System.Net.Sockets.SocketException or AmazonClientException => (BusFailureReason.Connection, true),
            TimeoutException or TaskCanceledException => (BusFailureReason.Timeout, true),
            _ => (BusFailureReason.BrokerError, true),
        };
        return new BusException($"sqs: {operation}{where} failed: {ex.Message}", reason, SqsTransportFactory.BackendName, topic, transient, ex);
    }

    /// <summary>Whether SQS says the receipt handle is no longer valid (the message was deleted, released or redelivered).</summary>
    public static bool IsStaleReceipt(string? code)
        => code is "ReceiptHandleIsInvalid" or "InvalidParameterValue" or "MessageNotInflight" or "AWS.SimpleQueueService.MessageNotInflight" or "InvalidReceiptHandle";
}
