{#
    Select the months of `upstream` that an incremental model must (re)build: months missing from
    the model, and months whose load or labels changed. A month is compared by its load_id, row
    count, labelled row count, defaults and the sum of the defaulted ids, so a re-ingested month
    (new load_id) and labels that arrived later for a stored month (same load_id, other targets,
    even at an equal default count) are both rebuilt.
    Call it only inside `if is_incremental()`, where the model ({{ this }}) exists.
    NOTE: a month deleted upstream stays in the model until `dbt build --full-refresh`; the
    ingest gate replaces months but never deletes one.
#}
{% macro months_to_rebuild(upstream) %}
    select upstream_months.month
    from (
        {{ _month_signature(upstream) }}
    ) as upstream_months
    left join (
        {{ _month_signature(this) }}
    ) as stored_months
        on upstream_months.month = stored_months.month
    where
        stored_months.month is null
        or upstream_months.load_ids <> stored_months.load_ids
        or upstream_months.row_count <> stored_months.row_count
        or upstream_months.labelled_count <> stored_months.labelled_count
        or upstream_months.default_count <> stored_months.default_count
        or upstream_months.default_id_sum <> stored_months.default_id_sum
{% endmacro %}

{% macro _month_signature(relation) %}
    select
        month,
        {{ dbt.concat(["min(load_id)", "'/'", "max(load_id)"]) }} as load_ids,
        count(*) as row_count,
        count(target) as labelled_count,
        coalesce(sum(target), 0) as default_count,
        {#- changes when corrected labels move a default to another application at equal count -#}
        coalesce(sum(case when target = 1 then sk_id_curr end), 0) as default_id_sum
    from {{ relation }}
    group by month
{% endmacro %}

{#
    Select the rows of `upstream` that an incremental model must (re)build: every row on a full
    build, and on an incremental run only the rows of the months months_to_rebuild returns.
#}
{% macro rows_to_rebuild(upstream) %}
    select upstream_rows.*
    from {{ upstream }} as upstream_rows
    {%- if is_incremental() %}
        inner join (
            {{ months_to_rebuild(upstream) }}
        ) as changed_months
            on upstream_rows.month = changed_months.month
    {%- endif %}
{% endmacro %}
