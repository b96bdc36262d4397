namespace Bus.Internal;

/// <summary>Time-ordered message ids: version 7 UUIDs, 32 hex digits, so ids sort by creation time.</summary>
internal static class MessageIds
{
    public static string New() => Guid.CreateVersion7().ToString("N");
}
