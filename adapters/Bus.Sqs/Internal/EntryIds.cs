using System.Globalization;

namespace Bus.Sqs.Internal;

/// <summary>Entry ids of SQS batch requests ("0" … "9"), without formatting a string per entry.</summary>
internal static class EntryIds
{
    private static readonly string[] Ids = [.. Enumerable.Range(0, 10).Select(i => i.ToString(CultureInfo.InvariantCulture))];

    public static string Of(int index) => (uint)index < (uint)Ids.Length ? Ids[index] : index.ToString(CultureInfo.InvariantCulture);
}
