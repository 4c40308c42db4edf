{% macro monitoring_auc(relation_name, group_columns, score='default_probability', label='target') %}
    {#-
        Select per group the labeled rows, the positives (label 1), the negatives (label 0) and
        the area under the ROC curve by the Mann-Whitney rank sum:
        AUC = (sum of the positives' ranks - p (p + 1) / 2) / (p * n), ranks ascending by
        score, tied scores sharing their average rank (as sklearn's roc_auc_score counts a tie
        as half). AUC is NULL unless the group has both classes. Rows with a NULL label are left out.
    -#}
    {%- set groups = group_columns | join(', ') -%}
    select
        {{ groups }},
        count(*) as labeled_rows,
        cast(sum({{ label }}) as {{ dbt.type_bigint() }}) as positives,
        cast(sum(1 - {{ label }}) as {{ dbt.type_bigint() }}) as negatives,
        case
            when sum({{ label }}) > 0 and sum(1 - {{ label }}) > 0
                then (
                    sum(case when {{ label }} = 1 then average_rank else 0 end)
                    - sum({{ label }}) * (sum({{ label }}) + 1) / 2.0
                ) / (cast(sum({{ label }}) as {{ type_double() }}) * sum(1 - {{ label }}))
        end as auc
    from (
        select
            {{ groups }},
            {{ label }},
            rank() over (partition by {{ groups }} order by {{ score }})
            + (count(*) over (partition by {{ groups }}, {{ score }}) - 1) / 2.0 as average_rank
        from {{ relation_name }}
        where {{ label }} is not null
    ) as ranked
    group by {{ groups }}
{% endmacro %}
